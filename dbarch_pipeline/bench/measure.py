"""Planner cost and clock time of a statement on the sandbox.

Planner cost comes from `EXPLAIN (GENERIC_PLAN)` for statements with `$n` (no values needed);
clock time from `EXPLAIN (ANALYZE, BUFFERS)` with sampled values bound as real parameters (the
`$n` stay in the text, so the statement is exactly what pg_stat_statements recorded). Each parameter
set is run once to warm the cache, then `runs` times; the median is kept with every run.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql

from ..db import tag
from ..models import Measurement
from ..safety.walls import read_only_section


class _Unknown(str):
    """A text value sent with type `unknown`, so the server infers the parameter's type."""


class _UnknownDumper(psycopg.adapt.Dumper):
    oid = 0  # unknown

    def dump(self, obj: str) -> bytes:
        return obj.encode()


def _raw_cursor(conn: psycopg.Connection) -> psycopg.RawCursor:
    cur = psycopg.RawCursor(conn)
    cur.adapters.register_dumper(_Unknown, _UnknownDumper)
    return cur


def _explain(conn: psycopg.Connection, query: str, options: str, params: Sequence[str] | None) -> dict:
    # options are fixed strings chosen below, never user input
    text = sql.SQL(tag("EXPLAIN ({}) ")).format(sql.SQL(options)) + sql.SQL(query)
    # safety's second wall: the statement runs (or is planned, which may fold functions) read-only
    with read_only_section(conn), _raw_cursor(conn) as cur:
        # prepare=False: psycopg would prepare a statement run five times, and a prepared EXPLAIN
        # without parameters (GENERIC_PLAN) then fails on the bind of the next one
        cur.execute(text, [_Unknown(p) if p is not None else None for p in params] if params else None,
                    prepare=False)
        row = cur.fetchone()
    doc = row[0]
    return doc[0] if isinstance(doc, list) else doc


GENERIC_STATEMENT = "dbarch_generic_plan"


def generic_cost(conn: psycopg.Connection, query: str, has_params: bool, param_count: int = 0,
                 *, verbose: bool = False) -> tuple[float, dict]:
    """Total planner cost without parameter values: EXPLAIN (GENERIC_PLAN) on PostgreSQL 16+, a
    prepared statement forced to its generic plan before that. `verbose` adds schemas and
    qualified column names (the advisor reads the plan's conditions)."""
    if has_params and conn.info.server_version < 160000:
        return _generic_via_prepare(conn, query, param_count, verbose)
    options = ("VERBOSE, " if verbose else "") + ("GENERIC_PLAN, FORMAT JSON" if has_params else "FORMAT JSON")
    doc = _explain(conn, query, options, None)
    return float(doc["Plan"]["Total Cost"]), doc


def _generic_via_prepare(conn: psycopg.Connection, query: str, param_count: int, verbose: bool = False
                         ) -> tuple[float, dict]:
    # plan_cache_mode makes the plan independent of the (NULL) values; must run inside a transaction
    # (SET LOCAL), which every measurement does
    name = sql.Identifier(GENERIC_STATEMENT)
    conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.execute(sql.SQL(tag("PREPARE {} AS ")).format(name) + sql.SQL(query))
    try:
        args = sql.SQL(", ").join([sql.NULL] * param_count)
        explain = "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {}({})" if verbose else "EXPLAIN (FORMAT JSON) EXECUTE {}({})"
        row = conn.execute(sql.SQL(tag(explain)).format(name, args)).fetchone()
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    doc = row[0][0] if isinstance(row[0], list) else row[0]
    return float(doc["Plan"]["Total Cost"]), doc


def plan_once(conn: psycopg.Connection, query: str, param_sets: Sequence[Sequence[str]], *, has_params: bool,
              param_count: int) -> dict:
    """The plan the statement would get: a custom plan for its first parameter set, else the generic
    one (no execution)."""
    if param_sets and param_sets[0]:
        return _explain(conn, query, "FORMAT JSON", param_sets[0])
    return generic_cost(conn, query, has_params, param_count)[1]


def analyze_once(conn: psycopg.Connection, query: str, params: Sequence[str]) -> dict:
    return _explain(conn, query, "ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON", params)


def _walk(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []) or []:
        yield from _walk(child)


def indexes_in(doc: dict) -> set[str]:
    return {node["Index Name"] for node in _walk(doc["Plan"]) if "Index Name" in node}


def shared_blocks(doc: dict) -> int:
    plan = doc["Plan"]
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def measure(conn: psycopg.Connection, query: str, param_sets: Sequence[Sequence[str]], *,
            has_params: bool, runs: int = 5, warmup: int = 1, param_count: int = 0) -> Measurement:
    """Generic cost, then per parameter set: warm-up, `runs` timed executions, median kept."""
    cost, generic_plan = generic_cost(conn, query, has_params, param_count)
    m = Measurement(generic_cost=cost, plan=generic_plan)
    m.indexes_used |= indexes_in(generic_plan)
    for params in param_sets:
        for _ in range(warmup):
            analyze_once(conn, query, params)
        timings = []
        doc: dict[str, Any] = {}
        for _ in range(runs):
            doc = analyze_once(conn, query, params)
            timings.append(float(doc["Execution Time"]) + float(doc.get("Planning Time", 0.0)))
        m.timings_ms.append(timings)
        m.costs.append(float(doc["Plan"]["Total Cost"]))
        m.buffers.append(shared_blocks(doc))
        m.indexes_used |= indexes_in(doc)
        if len(m.timings_ms) == 1:
            m.plan = doc
    return m


def median_ms(m: Measurement) -> float | None:
    """The statement's time: the mean over parameter sets of each set's median."""
    if not m.timings_ms:
        return None
    return statistics.fmean(statistics.median(t) for t in m.timings_ms)


def compact_plan(doc: dict | None, depth: int = 0, max_depth: int = 6) -> dict | None:
    """The plan tree with only the fields a reviewer reads, to keep evidence small."""
    if doc is None:
        return None
    plan = doc.get("Plan", doc)
    keep = {k: plan[k] for k in ("Node Type", "Relation Name", "Index Name", "Join Type", "Total Cost",
                                 "Plan Rows", "Actual Rows", "Index Cond", "Filter", "Sort Key")
            if k in plan}
    children = plan.get("Plans") or []
    if children and depth < max_depth:
        keep["Plans"] = [compact_plan(c, depth + 1, max_depth) for c in children]
    return keep


def _timed(conn: psycopg.Connection, query: str, params: Sequence[str], m: Measurement, doc_out: list) -> float:
    doc = analyze_once(conn, query, params)
    doc_out[:] = [doc]
    m.indexes_used |= indexes_in(doc)
    return float(doc["Execution Time"]) + float(doc.get("Planning Time", 0.0))


def measure_pair(with_conn: psycopg.Connection, without_conn: psycopg.Connection, query: str,
                 param_sets: Sequence[Sequence[str]], *, has_params: bool, runs: int = 5, warmup: int = 1,
                 param_count: int = 0, max_runs: int | None = None, separated=None, first_runs: int | None = None,
                 clear=None) -> tuple[Measurement, Measurement]:
    """The statement without (on `without_conn`, which cannot see the uncommitted index) and with the
    index (on `with_conn`), interleaved run by run — without, with, with, without, ... — so that drift
    of the machine (other load, caches) hits both sides alike.

    Sequential: a first round of `first_runs` pairs per parameter set (default `runs`) stops there
    only when `clear(before, after)` says the two are apart beyond doubt (a statement many times
    faster needs few runs); otherwise the runs go on to `runs` per set, then rounds of `runs` more
    while `separated(before, after)` says the two are not yet told apart, up to `max_runs`. Close
    calls therefore get every run they got before; only clear cases stop early."""
    ms = []
    for conn in (without_conn, with_conn):
        cost, plan = generic_cost(conn, query, has_params, param_count)
        m = Measurement(generic_cost=cost, plan=plan)
        m.indexes_used |= indexes_in(plan)
        ms.append(m)
    before, after = ms
    for params in param_sets:
        for _ in range(warmup):
            analyze_once(without_conn, query, params)
            analyze_once(with_conn, query, params)
        before.timings_ms.append([])
        after.timings_ms.append([])
    docs: list[list] = [[[], []] for _ in param_sets]
    done = 0
    for stop in run_schedule(runs, max_runs, first_runs if clear is not None else None):
        for n, params in enumerate(param_sets):
            for r in range(done, stop):
                order = ((without_conn, before, 0), (with_conn, after, 1))
                for conn, m, side in (order if r % 2 == 0 else order[::-1]):
                    m.timings_ms[n].append(_timed(conn, query, params, m, docs[n][side]))
        done = stop
        if stop < runs:
            if clear(before.timings_ms, after.timings_ms):
                break
        elif separated is None or separated(before.timings_ms, after.timings_ms):
            break
    for n in range(len(param_sets)):
        for m, side in ((before, 0), (after, 1)):
            doc = docs[n][side][0]
            m.costs.append(float(doc["Plan"]["Total Cost"]))
            m.buffers.append(shared_blocks(doc))
            if n == 0:
                m.plan = doc
    return before, after


def run_schedule(runs: int, max_runs: int | None, first_runs: int | None = None) -> list[int]:
    """The numbers of runs per set after which the pair may stop: an early look after `first_runs`
    (when fewer than `runs`), then `runs`, then every `runs` more up to `max_runs`.

    >>> run_schedule(5, 10, 2), run_schedule(5, 10), run_schedule(3, 9, 3), run_schedule(5, 12, 2)
    ([2, 5, 10], [5, 10], [3, 6, 9], [2, 5, 10, 12])
    """
    limit = max(runs, max_runs or runs)
    stops = [first_runs] if first_runs and 0 < first_runs < runs else []
    n = runs
    while True:
        stops.append(min(n, limit))
        if n >= limit:
            return stops
        n += runs
