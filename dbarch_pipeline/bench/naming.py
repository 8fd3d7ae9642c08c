"""Index names that never collide with a relation of the target.

An index name shares its schema's namespace with every table, view, sequence and index (pg_class),
so a candidate named like any of them would fail with `relation ... already exists`. A taken name
(or one two different candidates would share) gets a deterministic suffix: a short hash of the
candidate's definition, so the same candidate gets the same name on every run, then a counter in
the unlikely case that is taken too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import psycopg

from ..advisor.candidates import index_name
from ..db import named
from ..models import IndexCandidate

MAX_IDENTIFIER = 63


def _suffixed(base: str, suffix: str) -> str:
    return base[: MAX_IDENTIFIER - len(suffix) - 1] + "_" + suffix


def taken_names(conn: psycopg.Connection, schemas: Sequence[str]) -> set[tuple[str, str]]:
    rows = conn.execute(named("select_relation_names"), {"schemas": sorted(set(schemas))}).fetchall()
    return {(r[0], r[1]) for r in rows}


def unique_names(conn: psycopg.Connection, cands: Sequence[IndexCandidate]) -> list[IndexCandidate]:
    """The candidates, each with a name free in its schema and distinct from the others'."""
    taken = taken_names(conn, [c.schema for c in cands]) if cands else set()
    return assign_names(cands, taken)


def assign_names(cands: Sequence[IndexCandidate], taken: set[tuple[str, str]]) -> list[IndexCandidate]:
    """Pure part of unique_names.

    >>> a = IndexCandidate("s", "t", ("x",), "r")
    >>> [c.name for c in assign_names([a], {("s", "t_x_idx")})]
    ['t_x_idx_fd027037']
    >>> [c.name for c in assign_names([a], set())]
    [None]
    """
    used = set(taken)
    given: dict[str, str] = {}   # the same definition (proposed for several statements): one name
    out = []
    for cand in cands:
        base = index_name(dataclasses.replace(cand, name=None))
        definition = dataclasses.replace(cand, name=None, reason="").label()
        if definition in given:
            name = given[definition]
            out.append(cand if name == base and cand.name is None else dataclasses.replace(cand, name=name))
            continue
        name = cand.name or base
        if (cand.schema, name) in used:
            digest = hashlib.sha256(definition.encode()).hexdigest()
            name = _suffixed(base, digest[:8])
            n = 2
            while (cand.schema, name) in used:
                name = _suffixed(base, f"{digest[:8]}_{n}")
                n += 1
        used.add((cand.schema, name))
        given[definition] = name
        out.append(cand if name == base and cand.name is None else dataclasses.replace(cand, name=name))
    return out
