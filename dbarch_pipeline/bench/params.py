"""Real values for the `$n` of a normalized statement, sampled from the table data.

pg_stat_statements keeps `WHERE user_id = $1`, not the values the application sent. To time the
statement we need values that exist and that cover skew: rows sampled from the table (frequent
values appear as often as they occur), plus the most common value from pg_stats (the worst case for
an equality lookup). Two range parameters on one column get adjacent histogram bounds (a narrow
window, like a dashboard's "last hour"), or two sampled values in order when no histogram exists.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..advisor.analyze import Predicate, QueryShape
from ..advisor.candidates import key_sql
from ..advisor.catalog import Catalog
from ..db import tag

DEFAULT_LIMIT_VALUE = "50"
EXPRESSION_PREFIXES = ("lower(", "upper(")


@dataclass
class ParameterPlan:
    """How each `$n` gets its value; `unmapped` lists the ones nothing tells us how to fill."""

    sources: dict[int, Predicate]
    limits: set[int]
    unmapped: list[int]


def plan_parameters(shape: QueryShape) -> ParameterPlan:
    sources: dict[int, Predicate] = {}
    for pred in shape.predicates:
        for p in pred.params:
            sources.setdefault(p, pred)
    limits = set(shape.limit_params)
    unmapped = [n for n in range(1, shape.param_count + 1) if n not in sources and n not in limits]
    return ParameterPlan(sources, limits, unmapped)


def _base_column(column: str) -> str:
    if column.startswith(EXPRESSION_PREFIXES) and column.endswith(")"):
        return column[column.index("(") + 1:-1]
    return column


# A harmless value per type for parameters that stand for constants (multipliers, literals in CASE).
NEUTRAL = {"integer": "1", "bigint": "1", "smallint": "1", "numeric": "1", "double precision": "1",
           "real": "1", "text": "x", "character varying": "x", "boolean": "true", "date": "2000-01-01",
           "timestamp without time zone": "2000-01-01", "timestamp with time zone": "2000-01-01",
           "interval": "1 day"}


def parameter_types(conn: psycopg.Connection, query: str) -> dict[int, str]:
    """The types PostgreSQL infers for the statement's `$n` (from a prepared statement, deallocated)."""
    name = sql.Identifier("dbarch_param_types")
    try:
        conn.execute(sql.SQL(tag("PREPARE {} AS ")).format(name) + sql.SQL(query))
    except psycopg.Error:
        return {}
    try:
        row = conn.execute("SELECT parameter_types::text[] FROM pg_prepared_statements "
                           "WHERE name = 'dbarch_param_types'").fetchone()
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    types = [t for t in (row[0] if row else [])]
    return {i + 1: t.strip('"') for i, t in enumerate(types)}


def _sample_rows(conn: psycopg.Connection, schema: str, table: str, columns: list[str], reltuples: int,
                 n: int, seed: int) -> list[tuple[str | None, ...]]:
    """About n rows with all `columns` non-null, as text, via TABLESAMPLE (cheap on big tables)."""
    # a column, or an expression the plan showed (md5(val)): its values are what `$n` is compared with
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(key_sql(c)) for c in columns)
    not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(key_sql(c)) for c in columns)
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    pct = min(100.0, max(0.01, 100.0 * (n * 40) / max(reltuples, 1)))
    query = sql.SQL(tag("SELECT {cols} FROM {target} TABLESAMPLE SYSTEM ({pct}) REPEATABLE ({seed}) "
                        "WHERE {not_null} LIMIT {limit}")).format(
        cols=cols, target=target, pct=sql.Literal(pct), seed=sql.Literal(seed), not_null=not_null,
        limit=sql.Literal(n * 40))
    rows = conn.execute(query).fetchall()
    if len(rows) < n:
        # small or freshly loaded tables: TABLESAMPLE may return too few pages
        query = sql.SQL(tag("SELECT {cols} FROM {target} WHERE {not_null} LIMIT {limit}")).format(
            cols=cols, target=target, not_null=not_null, limit=sql.Literal(n * 40))
        rows = conn.execute(query).fetchall()
    rng = random.Random(seed)
    rng.shuffle(rows)
    return rows[:n]


def _stats(conn: psycopg.Connection, schema: str, table: str, column: str) -> tuple[list[str], list[str]]:
    """(most common values, histogram bounds) as text, from pg_stats."""
    row = conn.execute(
        tag("SELECT most_common_vals::text::text[], histogram_bounds::text::text[] FROM pg_stats "
            "WHERE schemaname = %s AND tablename = %s AND attname = %s"),
        (schema, table, column),
    ).fetchone()
    if row is None:
        return [], []
    return list(row[0] or []), list(row[1] or [])


def sample_parameter_sets(conn: psycopg.Connection, shape: QueryShape, catalog: Catalog, *,
                          n_sets: int = 4, seed: int = 7, fixed: dict[int, str] | None = None,
                          query: str | None = None) -> tuple[list[tuple[str, ...]], ParameterPlan]:
    """n_sets tuples of text values, one per `$n`, or [] when some parameter cannot be filled.
    `fixed` pins parameters to one value (the rare value a partial index is built for). A `$n` no
    column tells us about (a constant pg_stat_statements replaced, `SELECT $1 * avg(x)`) gets a
    neutral value of the type PostgreSQL infers for it, when `query` is given."""
    plan = plan_parameters(shape)
    if shape.param_count == 0:
        return [()], plan
    neutral: dict[int, str] = {}
    if plan.unmapped:
        types = parameter_types(conn, query) if query else {}
        neutral = {n: NEUTRAL[types[n]] for n in plan.unmapped if types.get(n) in NEUTRAL}
        if len(neutral) < len(plan.unmapped):
            return [], plan
        fixed = {**neutral, **(fixed or {})}

    by_table: dict[str, list[Predicate]] = defaultdict(list)
    for pred in plan.sources.values():
        if pred not in by_table[pred.table]:
            by_table[pred.table].append(pred)

    values: dict[int, list[str]] = {n: [DEFAULT_LIMIT_VALUE] * n_sets for n in plan.limits}
    for table, preds in by_table.items():
        info = catalog.table(table, shape.schemas.get(table, ""))
        if info is None:
            return [], plan
        columns = []
        for pred in preds:
            base = _base_column(pred.column)
            if base not in columns:
                columns.append(base)
        rows = _sample_rows(conn, info.schema, info.table, columns, info.reltuples, n_sets * 3, seed)
        if not rows:
            return [], plan
        for pred in preds:
            col_index = columns.index(_base_column(pred.column))
            sampled = [r[col_index] for r in rows]
            mcv, bounds = _stats(conn, info.schema, info.table, _base_column(pred.column))
            sides = {p.operator[0] for p in preds if p.column == pred.column and p.op == "range"}
            paired = {">", "<"} <= sides
            for i, n in enumerate(pred.params):
                values[n] = [_value_for(pred, i, k, sampled, mcv, bounds, paired, seed)
                             for k in range(n_sets)]
    for n, value in (fixed or {}).items():
        values[n] = [value] * n_sets
    sets = [tuple(values[n][k] for n in range(1, shape.param_count + 1)) for k in range(n_sets)]
    return sets, plan


def _value_for(pred: Predicate, position: int, k: int, sampled: list[str], mcv: list[str],
               bounds: list[str], paired: bool, seed: int) -> str:
    pick = sampled[k % len(sampled)]
    if pred.op in ("eq", "in") and pred.operator == "= ANY":
        return "{" + ",".join(_array_item(v) for v in sampled[k:k + 3] or [pick]) + "}"
    if pred.op in ("eq", "in"):
        if pred.op == "in" and position > 0:
            return sampled[(k + position * 3) % len(sampled)]
        # the first set is the most common value: the heaviest lookup the workload can send
        return mcv[0] if k == 0 and mcv else pick
    if pred.op == "like":
        return pick[:3] + "%"
    if pred.op in ("contains", "key", "overlap"):
        return _gin_value(pred.op, pick, k)
    if pred.op == "range" and (paired or pred.operator == "BETWEEN"):
        upper = pred.operator in ("<", "<=") or (pred.operator == "BETWEEN" and position == 1)
        if len(bounds) >= 3:
            # one window per parameter set, shared by the lower and the upper bound
            i = random.Random(f"{seed}:{pred.table}:{pred.column}:{k}").randrange(0, len(bounds) - 1)
            return bounds[i + 1] if upper else bounds[i]
        lo, hi = sorted([pick, sampled[(k + 1) % len(sampled)]])
        return hi if upper else lo
    return pick


def _gin_value(op: str, sampled: str, k: int) -> str:
    """A containment document, key or array taken from a sampled jsonb / array value."""
    if sampled.startswith("{") and not sampled.startswith('{"'):  # a PostgreSQL array literal
        items = [i for i in sampled.strip("{}").split(",") if i]
        return "{" + (items[k % len(items)] if items else "") + "}"
    try:
        doc = json.loads(sampled)
    except ValueError:
        return sampled
    if isinstance(doc, dict) and doc:
        key = sorted(doc)[k % len(doc)]
        return key if op == "key" else json.dumps({key: doc[key]})
    if isinstance(doc, list) and doc:
        return json.dumps([doc[k % len(doc)]])
    return sampled


def _array_item(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
