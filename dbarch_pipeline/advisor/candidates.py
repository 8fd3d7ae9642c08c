"""Candidate btree indexes for one statement, deterministic, in a sensible column order.

Equality columns come first, most selective first (pg_stats n_distinct); then one range column,
or the ORDER BY columns when the statement has ORDER BY ... LIMIT. Join keys get single-column
candidates on each side. Candidates that an existing index already covers are dropped, and tables
too small to benefit are skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg import sql

from ..models import IndexCandidate
from .analyze import QueryShape
from .catalog import Catalog, ExistingIndex, TableInfo

MAX_KEY_COLUMNS = 3
EXPRESSION = re.compile(r"^(lower|upper)\((\w+)\)$")


@dataclass(frozen=True)
class Skip:
    table: str
    reason: str


def candidates_for(shape: QueryShape, catalog: Catalog, *, min_table_rows: int = 10_000
                   ) -> tuple[list[IndexCandidate], list[Skip]]:
    """All candidates for the statement, and the tables skipped with the reason."""
    out: list[IndexCandidate] = []
    skips: list[Skip] = []
    for table in shape.tables:
        info = catalog.table(table, shape.schemas.get(table, ""))
        if info is None:
            skips.append(Skip(table, "not a table of the target (view, CTE or missing)"))
            continue
        if info.reltuples < min_table_rows:
            skips.append(Skip(table, f"too small to benefit ({info.reltuples} rows < {min_table_rows})"))
            continue
        for columns, reason in _column_sets(shape, table, info):
            cand = IndexCandidate(schema=info.schema, table=info.table, columns=tuple(columns),
                                  reason=reason,
                                  expressions=tuple(bool(EXPRESSION.match(c)) for c in columns))
            covering = covered_by(cand, info.indexes, eq_prefix=_eq_prefix_len(shape, table, columns))
            if covering is not None:
                skips.append(Skip(table, f"({', '.join(columns)}) already covered by {covering.name}"))
                continue
            if all(c.columns != cand.columns or c.table != cand.table for c in out):
                out.append(cand)
    return out, skips


def _eq_prefix_len(shape: QueryShape, table: str, columns: list[str]) -> int:
    eq = {p.column for p in shape.predicates_on(table) if p.op in ("eq", "in")}
    n = 0
    for c in columns:
        if c not in eq:
            break
        n += 1
    return n


def _column_sets(shape: QueryShape, table: str, info: TableInfo) -> list[tuple[list[str], str]]:
    preds = shape.predicates_on(table)
    eq = _unique([p.column for p in preds if p.op in ("eq", "in")])
    # most selective equality column first; expressions are as selective as their column
    eq.sort(key=lambda c: -info.distinct(_base_column(c)))
    ranges = _unique([p.column for p in preds if p.op == "range"])
    order = [c for t, c in shape.order_by if t == table]
    order_all_here = bool(order) and len(order) == len(shape.order_by)
    group = [c for t, c in shape.group_by if t == table]
    joins = _unique([j.left_column if j.left_table == table else j.right_column
                     for j in shape.joins if table in (j.left_table, j.right_table)])

    sets: list[tuple[list[str], str]] = []

    def add(cols: list[str], reason: str) -> None:
        cols = _unique(cols)[:MAX_KEY_COLUMNS]
        if cols and all(cols != s for s, _ in sets):
            sets.append((cols, reason))

    if eq:
        if order_all_here and shape.has_limit:
            add(eq + [c for c in order if c not in eq], "equality columns, then ORDER BY for ... LIMIT")
        if ranges:
            add(eq + ranges[:1], "equality columns, then one range column")
        add(eq, "equality columns, most selective first")
        if group:
            add(eq + [c for c in group if c not in eq], "equality columns, then GROUP BY columns")
    elif ranges:
        if order_all_here and shape.has_limit and order[0] != ranges[0]:
            add(order, "ORDER BY columns for ... LIMIT")
        add(ranges[:1], "range predicate")
    elif order_all_here and shape.has_limit:
        add(order, "ORDER BY columns for ... LIMIT")

    for col in joins:
        # the inner side of a nested loop needs its join key indexed; with an equality filter on the
        # same table the filter leads
        if eq and col not in eq:
            add(eq + [col], "equality columns, then join key")
        add([col], "join key (inner side of a nested loop)")
    return sets


def covered_by(cand: IndexCandidate, indexes: list[ExistingIndex], *, eq_prefix: int) -> ExistingIndex | None:
    """An existing btree that already serves the candidate: same leading columns (equality columns
    in any order, the rest in order). Partial indexes never count as covering."""
    n = len(cand.columns)
    wanted = [_normalize_key(c) for c in cand.columns]
    for ix in indexes:
        if ix.method != "btree" or ix.is_partial or len(ix.keys) < n:
            continue
        keys = [_normalize_key(k) for k in ix.keys[:n]]
        if keys == wanted:
            return ix
        if set(keys[:eq_prefix]) == set(wanted[:eq_prefix]) and keys[eq_prefix:] == wanted[eq_prefix:]:
            return ix
    return None


def index_name(cand: IndexCandidate) -> str:
    parts = [cand.table] + [re.sub(r"\W+", "_", c).strip("_") for c in cand.columns] + ["idx"]
    name = "_".join(parts)
    if len(name) <= 63:
        return name
    return name[:54] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def index_ddl(cand: IndexCandidate, *, concurrently: bool = False, if_not_exists: bool = False) -> sql.Composed:
    """CREATE INDEX for the candidate, identifiers quoted by psycopg."""
    keys = []
    for column in cand.columns:
        m = EXPRESSION.match(column)
        if m:
            keys.append(sql.SQL("({}({}))").format(sql.SQL(m.group(1)), sql.Identifier(m.group(2))))
        else:
            keys.append(sql.Identifier(column))
    return sql.SQL("CREATE INDEX {concurrently}{ine}{name} ON {schema}.{table} ({keys})").format(
        concurrently=sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""),
        ine=sql.SQL("IF NOT EXISTS ") if if_not_exists else sql.SQL(""),
        name=sql.Identifier(index_name(cand)),
        schema=sql.Identifier(cand.schema), table=sql.Identifier(cand.table),
        keys=sql.SQL(", ").join(keys),
    )


def ddl_text(cand: IndexCandidate, **kwargs: bool) -> str:
    return index_ddl(cand, **kwargs).as_string(None)


def _base_column(column: str) -> str:
    m = EXPRESSION.match(column)
    return m.group(2) if m else column


def _normalize_key(key: str) -> str:
    key = re.sub(r"::[\w ]+", "", key)          # pg_get_indexdef adds casts: lower((email)::text)
    return re.sub(r"[\s\"()]", "", key).lower()


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
