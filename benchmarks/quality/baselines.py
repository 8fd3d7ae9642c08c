"""The configurations dbarch is compared with: single-column indexes, Dexter's rule, hand-designed.

- single-column: one btree per column a statement filters on (every plain predicate column from
  dbarch's own sqlglot analysis: equality, IN, range, LIKE, IS NULL), unless an existing index
  already starts with that column. What a developer does after reading "index what you filter on".
- Dexter's rule (ankane/dexter): hypothetical indexes for every candidate at once, each statement
  re-planned with its generic plan (`EXPLAIN (GENERIC_PLAN)`, what Dexter does for normalized
  statements), and the indexes a plan uses kept when its cost falls by at least half. hypopg is not
  available on the embedded server, so the hypothetical indexes are real ones built inside a
  transaction that is rolled back. The candidates are dbarch's own (`candidates_for`, any table
  size) plus a single-column index on every predicate, join and ORDER BY column, so the comparison
  is between ways of choosing, not between candidate generators. As in Dexter, statements whose
  planner cost is under 100 are ignored, writes are not considered, and nothing is timed.
- hand-designed: the indexes in hand_<workload>.sql.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from dbarch_pipeline.advisor.analyze import UnparseableQuery
from dbarch_pipeline.advisor.candidates import candidates_for, covered_by, index_ddl, index_name
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.audit import analyze_with_catalog
from dbarch_pipeline.models import IndexCandidate

from .workloads import Statement, split_sql

BTREE_OPS = ("eq", "in", "range", "like", "null")
DEXTER_MIN_COST = 100.0      # Dexter's --min-cost default
DEXTER_SAVINGS = 0.5         # keep an index when the statement's cost at least halves


def _leads_an_index(info, column: str) -> bool:
    return any(ix.method == "btree" and not ix.is_partial and ix.keys and ix.keys[0] == column
               for ix in info.indexes)


def single_column(conn: psycopg.Connection, statements: list[Statement]) -> list[sql.Composable]:
    catalog = Catalog(conn)
    wanted: list[IndexCandidate] = []
    for st in statements:
        try:
            shape = analyze_with_catalog(st.pg_text, catalog)
        except UnparseableQuery:
            continue
        for p in shape.predicates:
            if p.is_expression or p.op not in BTREE_OPS:
                continue
            info = catalog.table(p.table, shape.schemas.get(p.table, ""))
            if info is None or _leads_an_index(info, p.column):
                continue
            cand = IndexCandidate(info.schema, info.table, (p.column,), "single-column baseline")
            if cand not in wanted:
                wanted.append(cand)
    return [index_ddl(c) for c in wanted]


@dataclass
class DexterVerdict:
    statement: str
    cost_before: float
    cost_after: float | None = None
    used: list[str] = field(default_factory=list)
    kept: bool = False
    note: str = ""


def generic_cost(conn: psycopg.Connection, st: Statement) -> tuple[float, set[str]]:
    options = "GENERIC_PLAN, FORMAT JSON" if "%s" in st.text else "FORMAT JSON"
    # options are one of two fixed strings; the statement is the workload's own text
    doc = conn.execute(sql.SQL("EXPLAIN ({}) ").format(sql.SQL(options)) + sql.SQL(st.pg_text)).fetchone()[0]
    plan = (doc[0] if isinstance(doc, list) else doc)["Plan"]
    return float(plan["Total Cost"]), _index_names(plan)


def _index_names(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans") or []:
        found |= _index_names(child)
    return found


def _dexter_candidates(shape, catalog: Catalog, mean_rows: float | None) -> list[IndexCandidate]:
    cands, _ = candidates_for(shape, catalog, min_table_rows=0, mean_rows=mean_rows)
    columns = ([(p.table, p.column) for p in shape.predicates if not p.is_expression and p.op in BTREE_OPS]
               + [(j.left_table, j.left_column) for j in shape.joins]
               + [(j.right_table, j.right_column) for j in shape.joins] + list(shape.order_by))
    for table, column in columns:
        info = catalog.table(table, shape.schemas.get(table, ""))
        if info is None or column not in info.columns:
            continue
        cand = IndexCandidate(info.schema, info.table, (column,), "Dexter single-column candidate")
        if covered_by(cand, info.indexes, eq_prefix=1) is None and cand not in cands:
            cands.append(cand)
    return cands


def dexter(conn: psycopg.Connection, statements: list[Statement], mean_rows: dict[str, float | None]
           ) -> tuple[list[sql.Composable], list[DexterVerdict]]:
    catalog = Catalog(conn)
    verdicts: list[DexterVerdict] = []
    todo: list[tuple[Statement, DexterVerdict]] = []
    by_name: dict[str, IndexCandidate] = {}
    for st in statements:
        if not st.is_read:
            continue
        cost, _ = generic_cost(conn, st)
        verdict = DexterVerdict(st.name, cost)
        verdicts.append(verdict)
        if cost < DEXTER_MIN_COST:
            verdict.note = f"cost {cost:.0f} < {DEXTER_MIN_COST:.0f}: ignored"
            continue
        try:
            shape = analyze_with_catalog(st.pg_text, catalog)
        except UnparseableQuery as exc:
            verdict.note = str(exc)
            continue
        for cand in _dexter_candidates(shape, catalog, mean_rows.get(st.name)):
            by_name.setdefault(index_name(cand), cand)
        todo.append((st, verdict))

    kept: dict[str, IndexCandidate] = {}
    with conn.transaction(force_rollback=True):
        for name, cand in by_name.items():
            try:
                with conn.transaction():
                    conn.execute(index_ddl(cand))
            except psycopg.Error as exc:
                print(f"  Dexter: could not build {cand.label()}: {str(exc).splitlines()[0]}")
        for st, verdict in todo:
            verdict.cost_after, used = generic_cost(conn, st)
            verdict.used = sorted(u for u in used if u in by_name)
            if verdict.used and verdict.cost_after <= DEXTER_SAVINGS * verdict.cost_before:
                verdict.kept = True
                for u in verdict.used:
                    kept[u] = by_name[u]
    return [index_ddl(c) for c in kept.values()], verdicts


def hand(path: Path) -> list[sql.Composable]:
    return [sql.SQL(statement) for statement in split_sql(path.read_text())]
