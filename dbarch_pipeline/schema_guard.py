"""Proof that an audit leaves the target's schema as it found it."""

from __future__ import annotations

import hashlib

import psycopg

from .db import named


def schema_definition(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """Columns, indexes and constraints of every user table, in a stable order."""
    return [tuple(r) for r in conn.execute(named("select_schema_definition")).fetchall()]


def schema_digest(conn: psycopg.Connection) -> str:
    text = "\n".join("\t".join(row) for row in schema_definition(conn))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
