"""Benchmark candidate indexes on the sandbox, each inside a rolled-back transaction.

Each statement is prepared once (parameter sets sampled, baseline measured). Each candidate index is
then built once, and inside the same rolled-back transaction:
- the statements it was proposed for are timed in full, interleaved with runs on a second
  connection (the *twin*) that cannot see the uncommitted index: without, with, with, without, ...
  until the two are told apart or the run limit is reached (then the verdict is "within noise");
- the other statements on the same table are re-planned, and timed when the plan uses the new index,
  so that an index serving several statements is credited for each and a regression is caught;
- its upkeep is measured: rows inserted into a temporary sample copy of the table, with and
  without the same index, give the write cost per row.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator, Sequence

import psycopg
from psycopg import sql

from ..advisor.analyze import QueryShape
from ..advisor.candidates import ddl_text, index_ddl, index_name
from ..advisor.catalog import Catalog
from ..db import connect, tag, named, rolled_back
from ..models import IndexCandidate, Measurement
from ..safety import check_statement
from . import evaluate
from .measure import compact_plan, generic_cost, indexes_in, measure, measure_pair, median_ms, plan_once
from .naming import unique_names
from .params import ParameterPlan, ValueTarget, sample_parameter_sets

REGRESSION_FACTOR = 1.10   # another statement 10% slower with the index is a regression
WRITE_PROBE_ROWS = 2_000


@dataclass(frozen=True)
class BenchSettings:
    runs: int = 5
    warmup: int = 1
    param_sets: int = 4
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 2_000
    seed: int = 7
    measure_write_cost: bool = True
    use_hypopg: bool = True     # screen candidates with hypothetical indexes when the sandbox has HypoPG
    show_observed_values: bool = False   # observed values (maybe personal data) shown in evidence
    max_runs: int = 10          # runs per parameter set when the first ones do not separate the two
    interleave: bool = True     # time without / with in alternation on a twin connection
    first_runs: int = 2         # an early look: a pair clearly apart after these runs per set stops there
    # side effects on other statements: "chosen" times them only for the indexes the selection picks
    # (the audit re-selects until every pick's side effects are timed); "all" times every candidate's
    side_effects: str = "chosen"


@dataclass
class Prepared:
    """One statement ready to be measured: its values and its baseline."""

    queryid: int
    query: str
    shape: QueryShape
    param_sets: list[tuple[str, ...]]
    plan: ParameterPlan
    baseline: Measurement = field(default_factory=lambda: Measurement(generic_cost=None))
    not_executed: str | None = None   # why the allow-list (safety) refused to execute it: costed only
    measured_as: str | None = None    # a write timed by its row-finding SELECT (bench.scan): that SELECT

    @property
    def timed(self) -> bool:
        return bool(self.param_sets) and bool(self.baseline.timings_ms)

    @property
    def has_params(self) -> bool:
        return self.shape.param_count > 0


def _guard(settings: BenchSettings) -> dict:
    return dict(statement_timeout_ms=settings.statement_timeout_ms, lock_timeout_ms=settings.lock_timeout_ms)


def prepare(conn: psycopg.Connection, queryid: int, query: str, shape: QueryShape, catalog: Catalog,
            settings: BenchSettings, fixed: dict[int, str] | None = None, *, target: ValueTarget | None = None,
            observed: list | None = None) -> Prepared:
    """Values for the statement's `$n` (observed, else calibrated against `target`) and its
    measurement as it is today."""
    # safety first: code not known to be safe is never executed, not by the calibration on the clock
    # (which times the statement), nor by the sampling (which evaluates its expressions on rows): a
    # refused statement gets no values and is costed with its generic plan
    verdict = check_statement(conn, query)
    param_sets, plan = sample_parameter_sets(conn, shape, catalog, n_sets=settings.param_sets,
                                             seed=settings.seed, fixed=fixed, query=query, target=target,
                                             observed=observed, timeout_ms=settings.statement_timeout_ms,
                                             verdict=verdict)   # refused: no values (costed only)
    item = Prepared(queryid, query, shape, param_sets, plan, not_executed=None if verdict.ok else verdict.reason)
    # with interleaving, every comparison times its own "without" side on the twin: the baseline
    # here only proves the values run (one run per set); it is completed if no twin can be had
    short = settings.interleave
    with rolled_back(conn, **_guard(settings)):
        item.baseline = measure(conn, query, param_sets, has_params=item.has_params,
                                runs=1 if short else settings.runs, warmup=0 if short else settings.warmup,
                                param_count=shape.param_count)
    return item


def full_baseline(conn: psycopg.Connection, items: Sequence[Prepared], settings: BenchSettings) -> None:
    """Complete the short baselines (one run per set) of `items` to `settings.runs`: needed where
    the comparison is against the baseline (no twin, a rewrite). Outside any experiment."""
    for item in items:
        if item.param_sets and item.baseline.timings_ms and \
                min(len(t) for t in item.baseline.timings_ms) < settings.runs:
            with rolled_back(conn, **_guard(settings)):
                item.baseline = measure(conn, item.query, item.param_sets, has_params=item.has_params,
                                        runs=settings.runs, warmup=settings.warmup,
                                        param_count=item.shape.param_count)


def _summary(m: Measurement, values: ParameterPlan | None = None, show_observed: bool = False) -> dict:
    return {
        "generic_cost": m.generic_cost,
        "costs": m.costs,
        "timings_ms": [[round(t, 3) for t in runs] for runs in m.timings_ms],
        "median_ms": median_ms(m),
        "shared_blocks": m.buffers,
        "indexes_used": sorted(m.indexes_used),
        "plan": values.shown_plan(compact_plan(m.plan), show_observed) if values else compact_plan(m.plan),
    }


def _planner_cost(m: Measurement) -> float | None:
    # with values the planner's custom plans are the honest estimate (a generic plan cannot use a
    # partial index and misjudges skew and LIKE); without values the generic plan is all we have
    return statistics.fmean(m.costs) if m.costs else m.generic_cost


def _result(item: Prepared, after: Measurement, built: set[str] | str, *, cross: bool,
            before: Measurement | None = None, show_observed: bool = False) -> dict:
    """One benchmark row: `built` names the indexes the experiment created (a partitioned table's
    index includes its partitions' own); `before` is the interleaved baseline when there is one."""
    before = before or item.baseline
    names = {built} if isinstance(built, str) else set(built)
    used = bool(names & after.indexes_used) if names != {""} else True
    cost_before, cost_after = _planner_cost(before), _planner_cost(after)
    planner_gain = (cost_before - cost_after) / cost_before if cost_before else None
    ms_before, ms_after = median_ms(before), median_ms(after)
    if item.timed and before.timings_ms and after.timings_ms:
        parts = evaluate.confidence_parts(before.timings_ms, after.timings_ms, planner_gain, used=used)
        confidence = evaluate.confidence_of(parts, used=used, cross=cross)
    else:
        confidence = evaluate.planner_only_confidence(planner_gain, used=used)
        parts = {"planner_only": True}
    measured = evaluate.gain_pct(ms_before, ms_after)
    slower = parts.get("verdict") == "slower" if "verdict" in parts else \
        bool(measured is not None and ms_after > ms_before * REGRESSION_FACTOR)
    return {
        "queryid": item.queryid, "status": "measured",
        "cost_before": cost_before, "cost_after": cost_after, "ms_before": ms_before, "ms_after": ms_after,
        "estimated_gain_pct": evaluate.gain_pct(cost_before, cost_after),
        "measured_gain_pct": measured, "confidence": confidence,
        "evidence": {
            "index_used": used, "cross_statement": cross,
            "regression": bool(slower and measured is not None and ms_after > ms_before * REGRESSION_FACTOR),
            "verdict": parts.get("verdict", "planner only"),
            "interleaved": before is not item.baseline,
            "parameter_sets": item.plan.shown(item.param_sets, show_observed) if item.has_params else [],
            "parameter_values": item.plan.evidence() if item.has_params else {},
            "unmapped_parameters": item.plan.unmapped, "not_executed": item.not_executed,
            **({"measured_as": item.measured_as} if item.measured_as else {}),
            "runs_per_set": len(after.timings_ms[0]) if after.timings_ms else 0,
            "confidence_parts": parts, "before": _summary(before, item.plan, show_observed),
            "after": _summary(after, item.plan, show_observed),
        },
    }


def plan_of(conn: psycopg.Connection, item: Prepared) -> dict:
    """The plan the prepared statement would get now (no execution)."""
    return plan_once(conn, item.query, item.param_sets, has_params=item.has_params,
                     param_count=item.shape.param_count)


@contextmanager
def twin_of(conn: psycopg.Connection, settings: BenchSettings) -> Iterator[psycopg.Connection | None]:
    """A second connection to the sandbox, for the interleaved baseline: it cannot see an index
    created (uncommitted) by `conn`. None when interleaving is off or no second session can be had
    (the baseline measured at preparation is then used)."""
    if not settings.interleave:
        yield None
        return
    try:
        info = conn.info
        dsn = psycopg.conninfo.make_conninfo(info.dsn, password=info.password) if info.password else info.dsn
        twin = connect(dsn, "sandbox", quiet_stats=True)
    except Exception:   # noqa: BLE001 - any failure only means no interleaving
        yield None
        return
    try:
        yield twin
    finally:
        twin.close()


def built_names(conn: psycopg.Connection, schema: str, name: str) -> set[str]:
    """The index and, on a partitioned table, its partitions' own indexes (the plans name those)."""
    rows = conn.execute(named("select_index_tree"), {"schema": schema, "name": name}).fetchall()
    return {r[0] for r in rows} | {name}


CLEAR_MARGIN = 2.0   # an early stop needs twice the 2x-with-margin bar (4.4x) in every run
CLEAR_SLOWER = 3.0   # or every run with the index three times slower than every run without


def clearly_apart(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]]) -> bool:
    """Whether more runs cannot change the verdict: in every parameter set, every run with the index
    is at least 4.4x faster than every run without it (twice the confidence's 2x-with-margin bar, so
    the bootstrap puts every resample beyond that bar however the clock jitters), or every run with
    it is 3x slower than every run without. Anything closer is a close call and gets the full number
    of runs. On generated timings (ratios 0.005-4, noise up to 30%, 90,000 draws) an early stop never
    gave another verdict than ten runs did, and no ratio between 0.5 and 1 stopped early; two 1.3-2x
    slowdowns with 30% noise did (as "slower", the ten runs' verdict too), and once a 3.3x gain with
    30% noise stopped as surely 2x where ten runs put that at 0.82.

    >>> clearly_apart([[100, 90], [50, 55]], [[1, 2], [3, 2]]), clearly_apart([[100, 90]], [[1, 25]])
    (True, False)
    >>> clearly_apart([[10, 11]], [[40, 35]]), clearly_apart([[10, 11], [10, 10]], [[40, 35], [9, 40]])
    (True, False)
    """
    sets = [(b, a) for b, a in zip(before_runs, after_runs) if b and a]
    if not sets:
        return False
    bar = evaluate.TARGET_SPEEDUP * evaluate.REPLAY_MARGIN * CLEAR_MARGIN
    return all(max(a) * bar <= min(b) for b, a in sets) or all(min(a) >= max(b) * CLEAR_SLOWER for b, a in sets)


PLANNER_MIN_SAVING = 0.10   # the HypoPG screen's bar (bench.whatif.SCREEN_MIN_SAVING), per statement here


def plan_check(conn: psycopg.Connection, item: Prepared, built: set[str]) -> tuple[bool, float | None]:
    """Whether any plan of the statement (each parameter set's custom plan, and the generic one) uses
    one of `built` — an index no plan uses leaves the plan, and so the time, unchanged — and the
    share of the planner's cost the index saves (custom plans against the baseline's, same values)."""
    generic = generic_cost(conn, item.query, item.has_params, item.shape.param_count)
    plans = [generic[1]]
    if item.has_params:
        plans += [plan_once(conn, item.query, [params], has_params=True, param_count=item.shape.param_count)
                  for params in item.param_sets]
    used = any(built & indexes_in(doc) for doc in plans)
    before = item.baseline.costs if item.has_params else [item.baseline.generic_cost or 0.0]
    after = [float(doc["Plan"]["Total Cost"]) for doc in plans[1:]] if item.has_params else [generic[0]]
    if len(before) != len(after) or not before or sum(before) <= 0:
        return used, None
    return used, 1.0 - sum(after) / sum(before)


def _timings(conn: psycopg.Connection, twin: psycopg.Connection | None, item: Prepared, settings: BenchSettings,
             *, runs: int, adaptive: bool, used: bool = True) -> tuple[Measurement | None, Measurement]:
    """The statement without and with the index. Interleaved on the twin when there is one: a pair
    clearly apart after `settings.first_runs` runs per set stops there; `adaptive` adds rounds while
    the two are not told apart. An index no plan uses (`used` False) changes nothing but the clock's
    noise, so it is timed once per set (both sides): its confidence is 0 whatever the clock says."""
    if twin is None:
        return None, measure(conn, item.query, item.param_sets, has_params=item.has_params, runs=runs,
                             warmup=settings.warmup, param_count=item.shape.param_count)
    if not used:
        return measure_pair(conn, twin, item.query, item.param_sets, has_params=item.has_params, runs=1,
                            warmup=0, param_count=item.shape.param_count, max_runs=1)
    return measure_pair(conn, twin, item.query, item.param_sets, has_params=item.has_params, runs=runs,
                        warmup=settings.warmup, param_count=item.shape.param_count,
                        max_runs=settings.max_runs if adaptive else runs,
                        separated=evaluate.separated if adaptive else None,
                        first_runs=settings.first_runs, clear=clearly_apart)


CROSS_LOOK_SETS = 2   # a side effect's first look: one run on each of this many parameter sets
CLOSE_CALL_RUNS = 3   # runs per set for a side effect, or an owner the planner expects little of


def _cross_timings(conn: psycopg.Connection, twin: psycopg.Connection | None, item: Prepared,
                   settings: BenchSettings) -> tuple[Measurement | None, Measurement]:
    """Another statement on the table whose plan uses the index (a side effect, whose confidence is
    capped below the pull-request bar): a first look of one interleaved run on the first two
    parameter sets is kept when the two are apart beyond doubt (`clearly_apart`); otherwise every
    set is timed with up to 3 runs, as before."""
    runs = min(settings.runs, CLOSE_CALL_RUNS)
    if twin is not None and len(item.param_sets) > 0:
        look = item.param_sets[:CROSS_LOOK_SETS]
        before, after = measure_pair(conn, twin, item.query, look, has_params=item.has_params, runs=1,
                                     warmup=settings.warmup, param_count=item.shape.param_count, max_runs=1)
        if clearly_apart(before.timings_ms, after.timings_ms):
            return before, after
    return _timings(conn, twin, item, settings, runs=runs, adaptive=False)


def agrees_small(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]]) -> bool:
    """Whether a look shows what a planner expecting under 10% said: in every parameter set, every
    run with the index within 10% of every run without (neither the gain the selection needs nor
    a regression).

    >>> agrees_small([[100], [50]], [[95], [52]]), agrees_small([[100], [50]], [[85], [52]])
    (True, False)
    """
    sets = [(b, a) for b, a in zip(before_runs, after_runs) if b and a]
    return bool(sets) and all(max(a) <= min(b) * REGRESSION_FACTOR and min(a) >= max(b) * (1 - (REGRESSION_FACTOR - 1))
                              for b, a in sets)


def never_slower(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]]) -> bool:
    """Whether a look shows no hint of a regression: in every parameter set, every run with the
    index at most 10% above every run without.

    >>> never_slower([[100], [50]], [[60], [54]]), never_slower([[100], [50]], [[60], [56]])
    (True, False)
    """
    sets = [(b, a) for b, a in zip(before_runs, after_runs) if b and a]
    return bool(sets) and all(max(a) <= min(b) * REGRESSION_FACTOR for b, a in sets)


def _short_look(conn: psycopg.Connection, twin: psycopg.Connection, item: Prepared,
                settings: BenchSettings, *, provisional: bool = False) -> tuple[Measurement, Measurement] | None:
    """An owner the planner expects the index to cut by under 10%: the side effect's first look
    (one interleaved run on two parameter sets). Kept when the two are apart beyond doubt, or when
    the clock agrees with the planner (`agrees_small`); such a row can then neither earn the index
    credit nor count as a regression, and is timed again in full if the selection picks the index
    (the audit's `settle_side_effects`). None: the clock disagrees, time it in full now.

    `provisional`: an owner over several tables whose configuration (the best candidate of each of
    its tables built together) is measured before its members are timed in full: the look is also
    kept when it shows no hint of a regression (`never_slower`); it only ranks the table's
    candidates for the configuration, and is timed in full if the selection picks the index for a
    statement no measured configuration serves far better."""
    if not item.param_sets:
        return None
    look = item.param_sets[:CROSS_LOOK_SETS]
    before, after = measure_pair(conn, twin, item.query, look, has_params=item.has_params, runs=1,
                                 warmup=settings.warmup, param_count=item.shape.param_count, max_runs=1)
    if clearly_apart(before.timings_ms, after.timings_ms) or agrees_small(before.timings_ms, after.timings_ms):
        return before, after
    if provisional and never_slower(before.timings_ms, after.timings_ms):
        return before, after
    return None


def _failure_rows(owners: Sequence[Prepared], ddl: str, exc: psycopg.Error, label: str, reason: str) -> list[dict]:
    failure = {"error": str(exc).strip().splitlines()[0], "sqlstate": exc.sqlstate, "index": label, "reason": reason}
    return [{"queryid": item.queryid, "ddl": ddl, "status": "failed", "cost_before": None, "cost_after": None,
             "ms_before": None, "ms_after": None, "estimated_gain_pct": None, "measured_gain_pct": None,
             "confidence": None, "evidence": failure} for item in owners]


SHAPE_KEYS = ("Node Type", "Relation Name", "Join Type", "Parent Relationship", "Scan Direction")


def plan_shape(doc: dict, built: set[str], keys: Sequence[str] = SHAPE_KEYS) -> str:
    """A short digest of the plan's shape: every node's type, relation, join type, place and scan
    direction, and its index (the built one named alike whatever its name). Two indexes with the
    same keys that differ only in INCLUDE columns, giving a statement the same shape, make it do the
    same work (an Index Only Scan and an Index Scan are different shapes).

    >>> a = {"Plan": {"Node Type": "Index Scan", "Relation Name": "t", "Index Name": "t_k_idx"}}
    >>> b = {"Plan": {"Node Type": "Index Scan", "Relation Name": "t", "Index Name": "t_k_incl_idx"}}
    >>> plan_shape(a, {"t_k_idx"}) == plan_shape(b, {"t_k_incl_idx"}), plan_shape(a, {"x"}) == plan_shape(b, {"x"})
    (True, False)

    `doc` is EXPLAIN's JSON document or a compact plan (evidence); `keys` are the node fields compared.
    """
    parts: list[str] = []

    def walk(node: dict, depth: int) -> None:
        index = node.get("Index Name")
        parts.append("|".join([str(depth)] + [str(node.get(k, "")) for k in keys]
                              + ["new" if index in built else str(index or "")]))
        for child in node.get("Plans") or []:
            walk(child, depth + 1)

    walk(doc.get("Plan", doc), 0)
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _side_effects(conn: psycopg.Connection, twin: psycopg.Connection | None, built: set[str],
                  others: Sequence[Prepared], settings: BenchSettings,
                  stop: Callable[[], str | None] | None = None, why: str | None = None,
                  known: Callable[[int, str], dict | None] | None = None) -> list[dict]:
    """The other statements on the table whose plan uses the built index, timed (side effects).
    `known(queryid, plan shape)` may give the row already timed for that statement with an index
    of the same keys (differing only in INCLUDE columns) that gave it the same plan shape: it
    stands for this one, untimed."""
    rows = []
    for item in others:
        if why or (stop and stop()):
            break
        doc = plan_of(conn, item)
        if not built & indexes_in(doc):
            continue
        shape = plan_shape(doc, built)
        same = known(item.queryid, shape) if known else None
        if same is not None:
            rows.append({**same, "evidence": {**same["evidence"], "timed_with": same["evidence"].get("index")}})
            continue
        before, after = _cross_timings(conn, twin, item, settings)
        row = _result(item, after, built, cross=True, before=before, show_observed=settings.show_observed_values)
        row["evidence"]["plan_shape"] = shape
        rows.append(row)
    return rows


DEFERRED = "deferred"   # status of a side effect planned but not timed (see evaluate_candidate)


def _deferred_rows(conn: psycopg.Connection, built: set[str], others: Sequence[Prepared],
                   stop: Callable[[], str | None] | None = None) -> list[dict]:
    """The other statements whose plan uses the built index, re-planned only: one `deferred` row
    each with the planner's expected saving (`plan_check`), for the caller to time later
    (`time_side_effects`) if the index is chosen."""
    rows = []
    for item in others:
        if stop and stop():
            break
        if not built & indexes_in(plan_of(conn, item)):
            continue
        saving = plan_check(conn, item, built)[1]
        rows.append({"queryid": item.queryid, "status": DEFERRED, "cost_before": None, "cost_after": None,
                     "ms_before": None, "ms_after": None,
                     "estimated_gain_pct": None if saving is None else round(saving * 100, 2),
                     "measured_gain_pct": None, "confidence": None,
                     "evidence": {"index_used": True, "cross_statement": True, "deferred": True,
                                  "planner_saving": None if saving is None else round(saving, 4)}})
    return rows


def time_side_effects(conn: psycopg.Connection, cand: IndexCandidate, others: Sequence[Prepared],
                      settings: BenchSettings, twin: psycopg.Connection | None = None,
                      stop: Callable[[], str | None] | None = None, *, measured: dict | None = None,
                      known: Callable[[int, str], dict | None] | None = None,
                      again: Sequence[Prepared] = (), full: Collection[int] = ()) -> list[dict]:
    """The side effects `evaluate_candidate(..., defer_others=True)` left: the candidate built again
    (rolled back) and `others` timed as side effects, exactly as they would have been then; `again`:
    its owners that had a short look only, timed in full (a side effect's runs, as owners; those in
    `full`, whose cost the planner expects the index to cut by 10% or more, an owner's runs and
    extra rounds, as `evaluate_candidate` would have timed them).
    `measured` is the owners' evidence (size, build time, write cost), copied into the rows;
    `known` as in `_side_effects` (a sibling's timing that stands for this index's)."""
    ddl = ddl_text(cand)
    if twin is None:
        full_baseline(conn, list(others) + list(again), settings)
    try:
        with rolled_back(conn, **_guard(settings)), _maybe_rolled_back(twin, settings):
            conn.execute(index_ddl(cand))
            built = built_names(conn, cand.schema, index_name(cand))
            rows = _side_effects(conn, twin, built, others, settings, stop, known=known)
            for item in again:
                if stop and stop():
                    break
                more = item.queryid in full
                before, after = _timings(conn, twin, item, settings,
                                         runs=settings.runs if more else min(settings.runs, CLOSE_CALL_RUNS),
                                         adaptive=more)
                row = _result(item, after, built, cross=False, before=before,
                              show_observed=settings.show_observed_values)
                row["evidence"]["timed_again"] = "the short look's index was picked"
                rows.append(row)
    except psycopg.Error:
        return []   # it was built once for its owners: a failure now leaves the side effects untimed
    ev = measured or {}
    for row in rows:
        row["ddl"] = ddl
        row["evidence"].update(index=cand.label(), reason=cand.reason, index_bytes=ev.get("index_bytes"),
                               build_ms=ev.get("build_ms"), write_ms_per_row=ev.get("write_ms_per_row"),
                               spec=cand.to_spec(), timed_after_selection=True)
    return rows


def same_keys(a: IndexCandidate, b: IndexCandidate) -> bool:
    """Whether two candidates differ at most in their INCLUDE columns (and name)."""
    return (a.schema, a.table, a.columns, a.method, a.opclasses, a.directions, a.where) == \
        (b.schema, b.table, b.columns, b.method, b.opclasses, b.directions, b.where)


def sibling_timings(rows: Sequence[dict], cand: IndexCandidate) -> Callable[[int, str], dict | None]:
    """For `_side_effects`' `known`: the side effect on a statement already timed with an index of
    the same keys as `cand` (only INCLUDE differs) that gave the statement the same plan shape —
    the same work, so the same verdict."""
    def known(queryid: int, shape: str) -> dict | None:
        return next((r for r in rows if r["queryid"] == queryid and r["status"] == "measured"
                     and r["evidence"].get("plan_shape") == shape and r["evidence"].get("spec")
                     and same_keys(IndexCandidate.from_spec(r["evidence"]["spec"]), cand)), None)
    return known


def evaluate_candidate(conn: psycopg.Connection, cand: IndexCandidate, owners: Sequence[Prepared],
                       others: Sequence[Prepared], settings: BenchSettings,
                       twin: psycopg.Connection | None = None,
                       stop: Callable[[], str | None] | None = None, *, defer_others: bool = False,
                       configured: Collection[int] = ()) -> list[dict]:
    """Build the candidate in a rolled-back transaction and measure what it does to every statement
    on its table. Rows for the owners always; for the others only when their plan uses the index.
    `stop` (a time budget) is asked before each statement: when it names a reason, the owners not
    yet timed get a `skipped` row with it and the others are left. With `defer_others` the others
    are re-planned but not timed: each gets a `deferred` row with the planner's expected saving
    (the caller times them with `time_side_effects` when the index is chosen). `configured`: the
    owners (queryids) over several tables whose configuration the caller measures before it times
    their members in full; with `defer_others` they get a provisional short look (`_short_look`)."""
    ddl = ddl_text(cand)
    left: list[Prepared] = []
    why: str | None = None
    name = index_name(cand)
    if twin is None:
        full_baseline(conn, list(owners) + ([] if defer_others else list(others)), settings)
    try:
        with rolled_back(conn, **_guard(settings)), _maybe_rolled_back(twin, settings):
            started = time.perf_counter()
            conn.execute(index_ddl(cand))
            build_ms = (time.perf_counter() - started) * 1000
            size = conn.execute(named("select_index_size"), {"schema": cand.schema, "name": name}).fetchone()[0]
            built = built_names(conn, cand.schema, name)
            rows = []
            for item in owners:
                why = why or (stop() if stop else None)
                if why:
                    left.append(item)
                    continue
                used, saving = (True, None) if twin is None or not item.param_sets else plan_check(conn, item, built)
                # rounds beyond `runs` for a close call only where the planner expects the index to
                # matter (the bar HypoPG's screen uses to build a candidate at all); where it expects
                # less, the row can only do what a side effect does — show a gain the clock proves
                # despite the planner, or a regression — and gets a side effect's runs
                more = saving is None or saving >= PLANNER_MIN_SAVING
                runs = settings.runs if more else min(settings.runs, CLOSE_CALL_RUNS)
                look = None
                if defer_others and used and twin is not None and (not more or item.queryid in configured):
                    look = _short_look(conn, twin, item, settings, provisional=item.queryid in configured)
                if look is not None:
                    before, after = look
                else:
                    before, after = _timings(conn, twin, item, settings, runs=runs, adaptive=more, used=used)
                row = _result(item, after, built, cross=False, before=before,
                              show_observed=settings.show_observed_values)
                row["evidence"]["planner_saving"] = None if saving is None else round(saving, 4)
                if look is not None and not clearly_apart(before.timings_ms, after.timings_ms):
                    row["evidence"]["short_look"] = True
                    if item.queryid in configured:
                        row["evidence"]["provisional"] = "a look until its configuration is measured"
                if not used:
                    # the plan is the one without the index: any difference on the clock is noise
                    row["evidence"].update(regression=False, plan_unchanged=True)
                rows.append(row)
            if defer_others:
                if not why:
                    rows.extend(_deferred_rows(conn, built, others, stop))
            else:
                rows.extend(_side_effects(conn, twin, built, others, settings, stop, why))
            write_ms = write_cost_per_row(conn, cand) if settings.measure_write_cost else None
    except psycopg.Error as exc:
        return _failure_rows(owners, ddl, exc, cand.label(), cand.reason)
    for row in rows:
        row["ddl"] = ddl
        row["evidence"].update(index=cand.label(), reason=cand.reason, index_bytes=size,
                               build_ms=round(build_ms, 1), write_ms_per_row=write_ms,
                               spec=cand.to_spec())
    return rows + ([{"queryid": item.queryid, "ddl": ddl, "status": "skipped", "cost_before": None,
                     "cost_after": None, "ms_before": None, "ms_after": None, "estimated_gain_pct": None,
                     "measured_gain_pct": None, "confidence": None,
                     "evidence": {"index": cand.label(), "reason": cand.reason, "why": why, "spec": cand.to_spec()}}
                    for item in left] if why else [])


@contextmanager
def _maybe_rolled_back(twin: psycopg.Connection | None, settings: BenchSettings) -> Iterator[None]:
    if twin is None:
        yield
        return
    with rolled_back(twin, **_guard(settings)):
        yield


def evaluate_configuration(conn: psycopg.Connection, members: Sequence[tuple[IndexCandidate, dict]],
                           item: Prepared, settings: BenchSettings,
                           twin: psycopg.Connection | None = None) -> dict:
    """The best candidates of several tables built together for one statement (a join that filters
    one table and looks up another by its key): the statement is credited with the set. `members`
    pairs each candidate with what its own experiment measured (size, write cost per row)."""
    return evaluate_configuration_for(conn, members, [item], settings, twin=twin)[0]


def evaluate_configuration_for(conn: psycopg.Connection, members: Sequence[tuple[IndexCandidate, dict]],
                               items: Sequence[Prepared], settings: BenchSettings,
                               twin: psycopg.Connection | None = None) -> list[dict]:
    """One configuration built once and every statement it was chosen for timed while it exists
    (one row per statement, in the order of `items`)."""
    ddls = [ddl_text(c) for c, _ in members]
    ddl = ";\n".join(ddls)
    labels = " + ".join(c.label() for c, _ in members)
    if twin is None:
        full_baseline(conn, items, settings)
    measured = []
    try:
        with rolled_back(conn, **_guard(settings)), _maybe_rolled_back(twin, settings):
            built: set[str] = set()
            per_member = []
            for cand, _ in members:
                conn.execute(index_ddl(cand))
                names = built_names(conn, cand.schema, index_name(cand))
                built |= names
                per_member.append(names)
            for item in items:
                measured.append((item, *_timings(conn, twin, item, settings, runs=settings.runs, adaptive=True)))
    except psycopg.Error as exc:
        return _failure_rows(items, ddl, exc, labels, "configuration")
    rows = []
    for item, before, after in measured:
        row = _result(item, after, built, cross=False, before=before)
        # the set is credited only when the plan uses every member (else one index does the work alone)
        row["evidence"]["index_used"] = all(names & after.indexes_used for names in per_member)
        if not row["evidence"]["index_used"]:
            row["confidence"] = 0.0
        row["ddl"] = ddl
        row["evidence"].update(
            index=labels, reason="indexes measured together for a statement over several tables",
            configuration=[{"ddl": d, "table": c.qualified_table, "label": c.label(),
                            "index_bytes": ev.get("index_bytes"), "write_ms_per_row": ev.get("write_ms_per_row")}
                           for d, (c, ev) in zip(ddls, members)],
            index_bytes=sum(int(ev.get("index_bytes") or 0) for _, ev in members),
            spec={"kind": "configuration", "members": [c.to_spec() for c, _ in members]})
        rows.append(row)
    return rows


def evaluate_rewrite(conn: psycopg.Connection, item: Prepared, rewrite: str, settings: BenchSettings,
                     spec: dict) -> dict:
    """A rewrite (Gemini's) is first proven to return the original's rows for every sampled parameter
    set, then timed exactly like an index: same values, same runs, in a rolled-back transaction."""
    from ..llm.second_opinion import verify_rewrites

    proof = verify_rewrites(conn, item.query, [rewrite], param_sets=item.param_sets or None,
                            statement_timeout_ms=settings.statement_timeout_ms)
    base = {"queryid": item.queryid, "ddl": rewrite, "cost_before": None, "cost_after": None, "ms_before": None,
            "ms_after": None, "estimated_gain_pct": None, "measured_gain_pct": None, "confidence": None}
    if not proof["accepted"]:
        reason = proof["rejected"][0]["reason"] if proof["rejected"] else "could not be verified"
        return {**base, "status": "rejected", "evidence": {"kind": "rewrite", "spec": spec, "why": reason}}
    full_baseline(conn, [item], settings)   # the rewrite is compared with the baseline
    try:
        with rolled_back(conn, **_guard(settings)):
            after = measure(conn, rewrite, item.param_sets, has_params=item.has_params, runs=settings.runs,
                            warmup=settings.warmup, param_count=item.shape.param_count)
    except psycopg.Error as exc:
        return {**base, "status": "failed", "evidence": {"kind": "rewrite", "spec": spec,
                                                         "error": str(exc).strip().splitlines()[0]}}
    row = _result(item, after, "", cross=False, show_observed=settings.show_observed_values)
    row["ddl"] = rewrite
    row["evidence"].update(kind="rewrite", index_used=True, spec=spec,
                           same_rows_for=item.plan.shown(proof["param_sets"], settings.show_observed_values),
                           reason=spec.get("rationale") or "rewrite suggested by Gemini")
    return row


def write_cost_per_row(conn: psycopg.Connection, cand: IndexCandidate) -> float | None:
    """Milliseconds each inserted row spends maintaining the index, measured on a temporary sample
    copy of the table (so the real table takes no writes); called inside a rolled-back transaction."""
    probe = sql.Identifier("dbarch_write_probe")
    source = sql.SQL("{}.{}").format(sql.Identifier(cand.schema), sql.Identifier(cand.table))
    try:
        conn.execute(sql.SQL(tag("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP")).format(probe, source))
        conn.execute(sql.SQL(tag("INSERT INTO {} SELECT * FROM {} LIMIT {}")).format(
            probe, source, sql.Literal(WRITE_PROBE_ROWS)))
        if conn.execute(sql.SQL("SELECT count(*) FROM {}").format(probe)).fetchone()[0] == 0:
            return None
        without = _time_inserts(conn, probe)
        temp = IndexCandidate("pg_temp", "dbarch_write_probe", cand.columns, cand.reason, method=cand.method,
                              opclasses=cand.opclasses, include=cand.include, where=cand.where)
        conn.execute(index_ddl(temp))
        with_index = _time_inserts(conn, probe)
    except psycopg.Error:
        return None
    return max(0.0, (with_index - without) / WRITE_PROBE_ROWS)


def _time_inserts(conn: psycopg.Connection, probe: sql.Identifier, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        conn.execute(sql.SQL(tag("INSERT INTO {} SELECT * FROM {} LIMIT {}")).format(
            probe, probe, sql.Literal(WRITE_PROBE_ROWS)))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def partial_values(shape: QueryShape, candidates: Sequence[IndexCandidate]) -> dict[int, str]:
    """A partial candidate was built for the rare value the statement asks for: time with it."""
    fixed: dict[int, str] = {}
    for cand in candidates:
        if cand.where:
            for pred in shape.predicates_on(cand.table):
                if pred.column == cand.where[0] and pred.op == "eq" and pred.param:
                    fixed[pred.param] = cand.where[1]
    return fixed


def benchmark_statement(conn: psycopg.Connection, query: str, shape: QueryShape,
                        candidates: Sequence[IndexCandidate], catalog: Catalog,
                        settings: BenchSettings, queryid: int = 0, target: ValueTarget | None = None) -> list[dict]:
    """One statement alone: one result row per candidate."""
    item = prepare(conn, queryid, query, shape, catalog, settings, partial_values(shape, candidates),
                   target=target)
    candidates = unique_names(conn, candidates)
    rows = []
    with twin_of(conn, settings) as twin:
        for cand in candidates:
            rows.extend(evaluate_candidate(conn, cand, [item], [], settings, twin=twin))
    return rows
