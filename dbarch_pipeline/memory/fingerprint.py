"""A stable fingerprint of a normalized SQL statement.

pg_stat_statements' queryid changes across servers and major versions; the fingerprint does not.
Constants and parameters are replaced by one placeholder and the statement is re-rendered by sqlglot, so
whitespace, keyword case and literal values do not change it.

>>> fingerprint("select *  from users where id = $1") == fingerprint("SELECT * FROM users WHERE id = 42")
True
"""

from __future__ import annotations

import hashlib
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


def normalize(sql_text: str) -> str:
    """Canonical text of the statement: constants and parameters as placeholders, sqlglot layout."""
    from ..safety.allowlist import nesting_depth, MAX_NESTING

    if nesting_depth(sql_text) > MAX_NESTING:   # too deep for a recursive parser: the text alone
        return _normalize_text(sql_text)
    try:
        tree = sqlglot.parse_one(sql_text, read="postgres")
    except (SqlglotError, ValueError, TypeError, RecursionError):
        tree = None
    if tree is None:
        return _normalize_text(sql_text)

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Literal, exp.Parameter, exp.Placeholder)) and not isinstance(
            node.parent, exp.Parameter
        ):
            return exp.Placeholder()
        return node

    try:
        return tree.transform(replace).sql(dialect="postgres")
    except RecursionError:
        return _normalize_text(sql_text)


def _normalize_text(sql_text: str) -> str:
    text = re.sub(r"/\*.*?\*/|--[^\n]*", " ", sql_text, flags=re.S)
    text = re.sub(r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b", "?", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def fingerprint(sql_text: str) -> str:
    """16 hex digits of the SHA-256 of the normalized statement."""
    return hashlib.sha256(normalize(sql_text).encode()).hexdigest()[:16]
