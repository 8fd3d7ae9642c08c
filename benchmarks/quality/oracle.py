"""The oracle: the best index set for a generated workload, found by measuring, not by any advisor.

The candidate space is generous and comes from the grammar (each statement's `refs`), never from
dbarch: per statement, every single-column and every two-column btree on the columns and
expressions it filters, joins or sorts on (both orders), `text_pattern_ops` for LIKE prefixes,
GIN (jsonb_ops and jsonb_path_ops) for jsonb, GIN for arrays.

The search is measured for real, time-bounded:
1. each candidate is built once inside a transaction that is rolled back (ANALYZE too when it is an
   expression index); every statement that may use it is planned with the application's values and,
   when its plan uses the candidate, timed with the same warm-median method as the replay;
2. statements over several tables get the best two candidates of each table built together, every
   combination timed (the pair a join needs is measured as a pair);
3. each statement keeps its fastest configuration when it is at least KEEP times faster than with no
   index; the oracle set is the union. The caller applies it for real and replays it like any other
   configuration.
Whatever the budget does not leave time for is listed as skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from psycopg import sql

from . import measure
from .generated import GenStatement, Ref

KEEP = 1.2                     # a statement keeps an oracle index when it runs at least this much faster
BTREE_KINDS = ("eq", "range", "like", "join", "order_asc", "order_desc")


@dataclass(frozen=True)
class Candidate:
    table: str
    keys: tuple[str, ...]       # rendered keys: a column, "(expression)", or either with an operator class
    method: str = "btree"

    @property
    def name(self) -> str:
        digest = hashlib.sha1(f"{self.table}|{self.method}|{self.keys}".encode()).hexdigest()[:10]
        return f"oq_{digest}"

    def ddl(self) -> sql.Composable:
        # keys are rendered from the grammar's own columns and expressions (generated.py), never input
        return sql.SQL("CREATE INDEX {} ON {} USING {} ({})").format(
            sql.Identifier(self.name), sql.Identifier(self.table), sql.SQL(self.method),
            sql.SQL(", ".join(self.keys)))

    @property
    def is_expression(self) -> bool:
        return any(k.startswith("(") for k in self.keys)

    def label(self) -> str:
        return f"{self.table} USING {self.method} ({', '.join(self.keys)})"


def _render(ref: Ref) -> str:
    return f"({ref.key})" if ref.is_expression else ref.key


def candidates(st: GenStatement) -> list[Candidate]:
    """Every candidate index of one statement, from its refs."""
    out: list[Candidate] = []

    def add(c: Candidate) -> None:
        if c not in out:
            out.append(c)

    by_table: dict[str, list[Ref]] = {}
    for ref in st.refs:
        by_table.setdefault(ref.table, []).append(ref)
    for table, refs in by_table.items():
        keys: list[str] = []
        for ref in refs:
            if ref.kind in BTREE_KINDS and _render(ref) not in keys:
                keys.append(_render(ref))
            if ref.kind == "like":
                add(Candidate(table, (f"{_render(ref)} text_pattern_ops",)))
            if ref.kind == "gin_jsonb":
                add(Candidate(table, (ref.key,), "gin"))
                add(Candidate(table, (f"{ref.key} jsonb_path_ops",), "gin"))
            if ref.kind in ("gin_jsonb_key", "gin_array"):
                add(Candidate(table, (ref.key,), "gin"))
        for k in keys:
            add(Candidate(table, (k,)))
        for a, b in itertools.permutations(keys, 2):
            add(Candidate(table, (a, b)))
    return out


@dataclass
class OracleResult:
    chosen: list[Candidate]
    best: dict[str, tuple[tuple[Candidate, ...], float]]       # statement -> (configuration, ms)
    tried: dict[str, dict[str, float]]                         # statement -> candidate label(s) -> ms
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    builds: int = 0


def _build(conn: psycopg.Connection, cands: tuple[Candidate, ...]) -> None:
    for c in cands:
        conn.execute(c.ddl())
    for table in sorted({c.table for c in cands if c.is_expression}):
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def search(conn: psycopg.Connection, statements: list[GenStatement], param_sets: dict[str, list[tuple]],
           base_ms: dict[str, float], *, runs: int = 2, budget_s: float = 300.0,
           say: Callable[[str], None] = lambda _m: None) -> OracleResult:
    """The measured search (see the module docstring). `conn` is a measurement connection
    (autocommit, no auto-prepare); nothing it builds survives."""
    started = time.perf_counter()
    reads = [st for st in statements if st.is_read and st.refs]
    per_statement = {st.name: candidates(st) for st in reads}
    users: dict[Candidate, list[GenStatement]] = {}
    for st in reads:
        for c in per_statement[st.name]:
            users.setdefault(c, []).append(st)
    result = OracleResult([], {}, {st.name: {} for st in reads})
    singles: dict[str, dict[Candidate, float]] = {st.name: {} for st in reads}

    def over_budget() -> bool:
        return time.perf_counter() - started > budget_s

    def timed(cands: tuple[Candidate, ...], targets: list[GenStatement]) -> dict[str, float]:
        """Build `cands` in a rolled-back transaction; time each target whose plan uses one of them."""
        out: dict[str, float] = {}
        names = {c.name for c in cands}
        try:
            with conn.transaction(force_rollback=True):
                _build(conn, cands)
                result.builds += 1
                for st in targets:
                    sets = param_sets[st.name]
                    if not any(measure.plan_indexes(conn, st, p) & names for p in sets[:2]):
                        continue
                    out[st.name] = measure.time_statement(conn, st, sets, runs).ms
        except psycopg.Error as exc:
            result.failed.append(f"{' + '.join(c.label() for c in cands)}: {str(exc).strip().splitlines()[0]}")
        return out

    for cand, targets in users.items():
        if over_budget():
            result.skipped.append(cand.label())
            continue
        for name, ms in timed((cand,), targets).items():
            singles[name][cand] = ms
            result.tried[name][cand.label()] = ms

    for st in reads:
        tables = sorted({r.table for r in st.refs})
        if len(tables) < 2:
            continue
        options = []
        for table in tables:
            ranked = sorted((ms, c.label(), c) for c, ms in singles[st.name].items() if c.table == table)
            if not ranked:   # the planner used nothing alone on this table: try its first candidates
                ranked = [(0.0, c.label(), c) for c in per_statement[st.name] if c.table == table][:2]
            options.append([c for _, _, c in ranked[:2]])
        for combo in itertools.product(*options):
            if over_budget():
                result.skipped.append(" + ".join(c.label() for c in combo) + f" (for {st.name})")
                continue
            for name, ms in timed(tuple(combo), [st]).items():
                result.tried[name][" + ".join(c.label() for c in combo)] = ms
                singles.setdefault(name, {})
                result.best.setdefault(name, ((), float("inf")))
                if ms < result.best[name][1]:
                    result.best[name] = (tuple(combo), ms)

    chosen: list[Candidate] = []
    for st in reads:
        for c, ms in singles[st.name].items():
            if ms < result.best.get(st.name, ((), float("inf")))[1]:
                result.best[st.name] = ((c,), ms)
        config, ms = result.best.get(st.name, ((), float("inf")))
        if config and base_ms.get(st.name, 0) >= KEEP * ms:
            chosen += [c for c in config if c not in chosen]
        elif st.name in result.best:
            del result.best[st.name]
    result.chosen = chosen
    result.seconds = time.perf_counter() - started
    say(f"oracle: {result.builds} builds, {len(chosen)} indexes chosen in {result.seconds:.0f}s"
        + (f", {len(result.skipped)} skipped (budget)" if result.skipped else ""))
    return result
