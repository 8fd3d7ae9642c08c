"""The writes a window really saw, per table, for weighing an index's upkeep against its reads.

Read benefits come from pg_stat_statements' window, so write costs must come from the same window:
- the write statements pg_stat_statements saw in it (INSERT / UPDATE / DELETE / MERGE: their calls
  and rows, from the snapshot's statement deltas), each attributed to its target table;
- where a capture at or before the window's start exists, the table counters' differences within
  the window, which also see writes no statement accounts for (COPY, functions, evicted entries).
Never the counters since the statistics reset: they hold the bulk load that created the data.

Not every written row costs every index. An UPDATE that changes no indexed column can be HOT (a
heap-only tuple: no index gets an entry), and PostgreSQL counts how many of a table's updates were
(`n_tup_hot_upd` of `n_tup_upd`). So an index pays for an UPDATE statement's rows only in the share
that was not HOT, unless the index covers a column the statement SETs: then it turns that
statement's HOT updates into regular ones, and pays for them in itself and in every index the table
already has (`upkeep_rows`).

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


def update_columns(query: str) -> frozenset[str] | None:
    """The columns an UPDATE's SET assigns (lower-cased; quoted names as written), or None when
    the statement is not a plain UPDATE or cannot be parsed.

    >>> sorted(update_columns('UPDATE shop.items SET price = $1, "Qty" = qty + $2 WHERE id = $3'))
    ['Qty', 'price']
    >>> update_columns("DELETE FROM t WHERE id = $1") is None
    True
    """
    if not re.match(r"^update\b", _LEADING.sub("", query), re.I):
        return None
    try:
        tree = sqlglot.parse_one(_LEADING.sub("", query), read="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return None
    if not isinstance(tree, exp.Update):
        return None
    out: set[str] = set()
    for assignment in tree.expressions:
        target = assignment.this if isinstance(assignment, exp.EQ) else None
        columns = list(target.find_all(exp.Column)) if target is not None else []
        if not columns:
            return None
        out |= {c.this.name if c.this.quoted else c.name.lower() for c in columns}
    return frozenset(out) or None


def index_columns(spec: dict) -> frozenset[str] | None:
    """Every column an index stores or filters on (keys, expressions' columns, INCLUDE, the partial
    predicate), from a candidate's spec; None when it cannot be told.

    >>> sorted(index_columns({"columns": ["lower(email)", "id"], "include": ["name"], "where": ["status", "x"]}))
    ['email', 'id', 'name', 'status']
    """
    out: set[str] = set()
    for text in list(spec.get("columns") or []) + list(spec.get("include") or []):
        if re.fullmatch(r"\w+", text):
            out.add(text.lower())
            continue
        if re.fullmatch(r'"[^"]+"', text):
            out.add(text[1:-1])
            continue
        try:
            tree = sqlglot.parse_one(text, read="postgres")
        except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
            return None
        names = {c.this.name if c.this.quoted else c.name.lower() for c in tree.find_all(exp.Column)}
        if not names:
            return None
        out |= names
    if spec.get("where"):
        out.add(str(spec["where"][0]).lower())
    return frozenset(out) or None


def upkeep_rows(writes: dict, columns: frozenset[str] | None) -> tuple[float, list[str]]:
    """Rows in the window that write an entry into an index on these columns, and what made them so.

    `writes`: one table's entry of `window_writes`. With the table's HOT share h (of its updates),
    an UPDATE statement's rows r cost an index that does not cover its SET columns r * (1 - h); an
    index that covers them costs r * h * (1 + the table's existing indexes) more than today's
    non-HOT share, charged at this index's own cost per row. Unknown columns or share: every row.

    >>> w = {"rows": 1000, "hot_share": 0.9, "indexes": 2, "source": "pg_stat_statements",
    ...      "statements": [{"queryid": 7, "rows": 1000, "recurring": True, "set_columns": ["price"]}]}
    >>> upkeep_rows(w, frozenset({"sku"}))[0], upkeep_rows(w, frozenset({"price"}))[0]
    (100.0, 3700.0)
    """
    rows = float(writes.get("rows") or 0)
    share = writes.get("hot_share")
    if columns is None or not share:
        return rows, []
    notes: list[str] = []
    for st in writes.get("statements") or []:
        set_columns = st.get("set_columns")
        if not st.get("recurring") or not set_columns:
            continue
        hot = float(st.get("rows") or 0) * share
        if columns & set(set_columns):
            rows += hot * (1 + int(writes.get("indexes") or 0))
            notes.append(f"covers {', '.join(sorted(columns & set(set_columns)))}, which statement "
                         f"{st['queryid']} updates: {share:.0%} of the table's updates were HOT; those would "
                         f"write an entry into this index and each of the table's "
                         f"{int(writes.get('indexes') or 0)} other index(es)")
        elif writes.get("source") == "pg_stat_statements":
            rows -= hot    # the counters' rows are already net of HOT updates
    return max(0.0, rows), notes


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
        columns = update_columns(s.get("query_text") or "")
        acc["statements"].append({"queryid": qid, "calls": calls, "rows": rows, "recurring": recurring,
                                  **({"set_columns": sorted(columns)} if columns else {})})
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
    for name, acc in out.items():
        c = table_counters.get(name) or {}
        if c.get("n_tup_upd"):
            # a share, so counters since the reset serve too: a bulk load inserts, it does not update
            acc["hot_share"] = round(min(1.0, int(c.get("n_tup_hot_upd") or 0) / int(c["n_tup_upd"])), 4)
    return {k: v for k, v in out.items() if v["rows"] or v["one_off_rows"] or v["statements"]}
