"""The writes a window really saw, per table, for weighing an index's upkeep against its reads.

Read benefits come from pg_stat_statements' window, so write costs must come from the same window:
- the write statements pg_stat_statements saw in it (INSERT / UPDATE / DELETE / MERGE: their calls
  and rows, from the snapshot's statement deltas), each attributed to its target table;
- where a capture at or before the window's start exists, the table counters' differences within
  the window, which also see writes no statement accounts for (COPY, functions, evicted entries).
Never the counters since the statistics reset: they hold the bulk load that created the data.

A statement run fewer times than the workload's `min_calls` (a bulk load, a one-off backfill) is
not a write rate: its rows are reported as one-off and left out of the rate. Upkeep is what every
future week pays; a load that happened once is paid once, like building the index after it.

>>> stmts = {1: {"query_text": "INSERT INTO public.t (a) SELECT g FROM generate_series(1, $1) g", "calls": 1,
...              "rows": 50000}, 2: {"query_text": "UPDATE t SET a = $1 WHERE id = $2", "calls": 40, "rows": 40},
...          3: {"query_text": "SELECT * FROM t", "calls": 9, "rows": 9}}
>>> w = window_writes(stmts, {}, seconds=100.0, min_calls=5, known_tables=["public.t"], counters_in_window=False)
>>> w["public.t"]["rows"], w["public.t"]["one_off_rows"], w["public.t"]["calls"]
(40, 50000, 40)
"""

from __future__ import annotations

import re
from typing import Iterable

import sqlglot
from sqlglot import exp

_LEADING = re.compile(r"^\s*(?:/\*.*?\*/\s*)*", re.S)
_TARGET = re.compile(r"^(?:insert\s+into|update|delete\s+from|merge\s+into)\s+(?:only\s+)?"
                     r"((?:\"[^\"]+\"|\w+)(?:\s*\.\s*(?:\"[^\"]+\"|\w+))?)", re.I)
WRITE_KINDS = (exp.Insert, exp.Update, exp.Delete, exp.Merge)


def _unquote(part: str) -> str:
    part = part.strip()
    return part[1:-1] if part.startswith('"') else part.lower()


def write_target(query: str) -> tuple[str | None, str] | None:
    """(schema or None, table) that a write statement writes into, or None for a read."""
    text = _LEADING.sub("", query)
    m = _TARGET.match(text)
    if m:
        parts = [_unquote(p) for p in re.split(r"\s*\.\s*", m.group(1))]
        return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    if not re.match(r"^\(?\s*with\b", text, re.I):
        return None
    # WITH ... INSERT/UPDATE/DELETE: the outer statement's target
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return None
    if not isinstance(tree, WRITE_KINDS):
        return None
    table = tree.this.find(exp.Table) if not isinstance(tree.this, exp.Table) else tree.this
    if table is None:
        return None
    return (table.db or None, table.name)


def _qualify(schema: str | None, table: str, known: Iterable[str]) -> str:
    if schema:
        return f"{schema}.{table}"
    matches = sorted(k for k in known if k.split(".", 1)[-1] == table)
    if len(matches) == 1:
        return matches[0]
    return f"public.{table}" if f"public.{table}" in matches or not matches else matches[0]


def window_writes(statements: dict[int, dict], table_counters: dict[str, dict], *, seconds: float,
                  min_calls: int, known_tables: Iterable[str], counters_in_window: bool) -> dict[str, dict]:
    """{schema.table: {"rows", "seconds", "calls", "one_off_rows", "source", "statements"}}.

    statements: the window's statement deltas (queryid -> query_text, calls, rows); table_counters:
    the window's table-counter deltas (history.Activity.tables), trusted only when
    `counters_in_window` (a capture at or before the window's start exists)."""
    known = sorted(set(known_tables) | set(table_counters))
    out: dict[str, dict] = {}

    def entry(name: str) -> dict:
        return out.setdefault(name, {"rows": 0, "seconds": max(1.0, seconds), "calls": 0, "one_off_rows": 0,
                                     "source": "pg_stat_statements", "statements": []})

    for qid, s in sorted(statements.items()):
        target = write_target(s.get("query_text") or "")
        if target is None:
            continue
        name = _qualify(*target, known)
        calls, rows = int(s.get("calls") or 0), int(s.get("rows") or 0)
        acc = entry(name)
        recurring = calls >= max(1, min_calls)
        if recurring:
            acc["rows"] += rows
            acc["calls"] += calls
        else:
            acc["one_off_rows"] += rows
        acc["statements"].append({"queryid": qid, "calls": calls, "rows": rows, "recurring": recurring})
    if counters_in_window:
        for name, c in sorted(table_counters.items()):
            counted = int(c.get("rows") or 0)
            acc = entry(name)
            # the counters see every write (COPY, functions, evicted statements) but not which were
            # one-off: take them when they exceed what the statements explain, less the one-off rows
            beyond = counted - acc["one_off_rows"]
            if beyond > acc["rows"]:
                acc["rows"] = beyond
                acc["source"] = "table counters within the window"
    return {k: v for k, v in out.items() if v["rows"] or v["one_off_rows"] or v["statements"]}
