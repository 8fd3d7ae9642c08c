"""The audit's five stages as plain functions; the Dagster assets are thin calls to these.

Each stage reads its input from the store (the latest snapshot of the target) and writes its output
there, replacing that snapshot's rows in one transaction, so any stage can be re-run alone.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import psycopg

from . import history
from .advisor.analyze import QueryShape, UnparseableQuery, analyze
from .advisor.candidates import OR_BRANCH, candidates_for, ddl_text, index_name
from .advisor.catalog import Catalog
from .advisor.existing import drop_recommendations
from .advisor.plan import analyze_planned
from .advisor import stability
from .advisor.selection import IndexChoice, PreviousVerdicts, Selection, members_of, note_kept, select_indexes
from .bench.evaluate import GUESSED_CAP, SIDE_EFFECT_CAP, pooled_baselines, trusted_confidence, trusted_view
from .bench.writes import window_writes
from .bench.naming import unique_names
from .bench.whatif import SCREEN_MIN_SAVING, hypopg_status, whatif, worth_building
from .bench.runner import (DEFERRED, PLANNER_MIN_SAVING, BenchSettings, Prepared, benchmark_statement, clearly_apart,
                           evaluate_candidate, evaluate_configuration_for, evaluate_rewrite, partial_values,
                           plan_shape, prepare, sibling_timings, time_side_effects, twin_of)
from .errors import DbarchError
from .memory import store
from .memory.embeddings import Embedder
from .memory.fingerprint import normalize
from .models import IndexCandidate, SlowQuery, Thresholds
from .bench.measure import compact_plan, generic_cost
from .bench import activity, observed as observed_values
from .bench.params import (ValueTarget, hidden_literals, match_types, parameter_types, recover_constants,
                           typed_literals, typed_statement)
from .bench.scan import row_scan
from .db import named, rolled_back
from .llm.gemini import usage_metadata
from .llm.second_opinion import combined_confidence, gemini_ideas, table_context
from .llm.validate import denied_function

Progress = Callable[[str], None]

@dataclass(frozen=True)
class AuditSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    bench: BenchSettings = field(default_factory=BenchSettings)
    min_table_rows: int = 10_000
    max_candidates_per_query: int = 6
    min_gain_pct: float = 10.0          # below this measured gain, no recommendation
    similar_limit: int = 5
    storage_budget_mb: float = 0.0      # 0: no budget
    max_indexes: int = 0                # 0: no cap (cost-benefit decides); else beyond it, next in line
    observed: observed_values.ObservedSettings = field(default_factory=observed_values.ObservedSettings)
    time_budget_s: float = 0.0          # 0: none; else the measurement stage stops when it is spent


class NoSnapshot(DbarchError):
    pass


def runnable(conn: psycopg.Connection, query: str) -> str:
    """pg_stat_statements' text as PostgreSQL can run it: `interval '60 days'` was kept as `interval
    $2`, a syntax error, and goes back as `$2::interval` (bench.params.typed_literals). The stored text
    stays pg_stat_statements' own: the server log and pg_stat_activity samples line up with it."""
    return typed_literals(conn, query)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _latest(store_conn: psycopg.Connection, target: str, partition_key: str | None = None) -> dict:
    snap = store.latest_snapshot(store_conn, target, partition_key)
    if snap is None:
        where = f" for partition {partition_key}" if partition_key else ""
        raise NoSnapshot(f"no slow-query snapshot stored for target {target!r}{where}",
                         "materialize slow_query_snapshot first (or run `dbarch audit`)")
    return snap


# -- 1. slow_query_snapshot -------------------------------------------------------------------------

def take_snapshot(target_conn: psycopg.Connection | None, store_conn: psycopg.Connection, *, target: str,
                  database: str, thresholds: Thresholds, window: tuple[datetime, datetime],
                  partition_key: str | None = None, run_id: str | None = None,
                  now: datetime | None = None, observed: observed_values.ObservedSettings | None = None) -> dict:
    """The window's slow statements, from the stored captures. When the window is still open (the
    current week) and the target is reachable, a capture is taken first, so a live audit sees up to
    now; a past week (a backfill) uses the stored captures alone."""
    now = now or utcnow()
    live = None
    if target_conn is not None and window[0] <= now < window[1]:
        live = history.capture(target_conn, store_conn, target=target, now=now)
    act = history.activity(store_conn, target=target, window_start=window[0], window_end=window[1])
    queries, skipped = history.slow_queries(act, thresholds)
    reset = next((r["at"] for r in act.resets if r["kind"] == "stats_reset"), None)
    # upkeep is weighed against reads of this window, so the writes must be this window's too
    writes = window_writes(act.statements, act.tables, seconds=act.covered_seconds,
                           min_calls=thresholds.min_calls, known_tables=act.tables,
                           counters_in_window=act.baseline)
    if target_conn is not None:
        counts = dict(target_conn.execute(named("select_index_counts")).fetchall())
        for name, acc in writes.items():
            acc["indexes"] = int(counts.get(name, 0))
    observed = observed or observed_values.ObservedSettings.from_env()
    # how many slow statements the pg_stat_activity sampler has seen (their constants, bench/activity.py)
    sampled = activity.coverage(store_conn, target, queries, observed)
    notes = act.notes() + [n for n in [activity.coverage_note(sampled)] if n]
    summary_history = {"captures": act.captures, "baseline": act.baseline, "resets": act.resets,
                       "notes": notes, "entries": act.entries, "max_entries": act.max_entries,
                       "deallocations": act.deallocations, "covered_seconds": act.covered_seconds,
                       "live_capture": live,
                       # the previous audit, read before this snapshot replaces anything: its measurements
                       # stand while the new ones agree within noise (advisor.stability)
                       "previous_audit": previous_audit_summary(store_conn, target)}
    snapshot_id = store.create_snapshot(
        store_conn, target=target, database=database, captured_at=min(now, window[1]),
        stats_reset=datetime.fromisoformat(reset) if reset else None, thresholds=thresholds, queries=queries,
        skipped=skipped, run_id=run_id, table_writes=writes, partition_key=partition_key, window=window,
        window_seconds=act.covered_seconds, history=summary_history)
    # the values the application bound, from the server log (or the user's log files), kept per statement
    seen = observed_values.collect(target_conn, store_conn, target=target, database=database, queries=queries,
                                   settings=observed, now=now)
    return {
        "snapshot_id": snapshot_id, "slow_queries": len(queries),
        "skipped_catalog_queries": skipped["catalog"],
        "total_exec_ms": round(sum(q.total_exec_ms for q in queries), 1),
        "captures": act.captures, "resets": len(act.resets), "statement_resets":
            sum(1 for r in act.resets if r["kind"] == "statement"),
        "pgss_entries": act.entries, "pgss_max_entries": act.max_entries, "deallocations": act.deallocations,
        "window_start": window[0].isoformat(), "window_end": window[1].isoformat(),
        "notes": notes, **seen, **{k: v for k, v in sampled.items() if k != "activity_samples"},
    }


# -- 2. query_embeddings ----------------------------------------------------------------------------

def embed_queries(store_conn: psycopg.Connection, embedder: Embedder, *, target: str,
                  partition_key: str | None = None) -> dict:
    """Embed the snapshot's statements whose fingerprint has never been embedded."""
    snap = _latest(store_conn, target, partition_key)
    queries = store.snapshot_queries(store_conn, snap["snapshot_id"])
    by_fp = {q.fingerprint: q for q in queries}
    known = store.known_fingerprints(store_conn, by_fp)
    todo = [q for fp, q in by_fp.items() if fp not in known]
    texts = [normalize(q.query_text) for q in todo]
    vectors = embedder.embed(texts)
    store.save_embeddings(store_conn, [(q.fingerprint, t, embedder.name, v)
                                       for q, t, v in zip(todo, texts, vectors)])
    return {"snapshot_id": snap["snapshot_id"], "queries": len(by_fp), "embedded": len(todo),
            "cached": len(by_fp) - len(todo)}


# -- 3. index_recommendations --------------------------------------------------------------------

def recommend_indexes(target_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
                      settings: AuditSettings, partition_key: str | None = None, gemini_client=None) -> dict:
    """Deterministic candidates per slow statement, with the similar past optimizations (RAG); with a
    Gemini client, its validated ideas join the candidates (indexes) or wait for proof (rewrites)."""
    snap = _latest(store_conn, target, partition_key)
    queries = store.snapshot_queries(store_conn, snap["snapshot_id"])
    vectors = store.embeddings_for(store_conn, [q.fingerprint for q in queries])
    catalog = Catalog(target_conn)
    # the application's literals in indexable expressions come back from the values it was logged with
    seen = observed_values.load(store_conn, target, [q.fingerprint for q in queries], settings.observed)
    # ... or from its texts sampled in pg_stat_activity while they ran
    texts = activity.load(store_conn, target, [q.queryid for q in queries], settings.observed)
    rows: list[dict] = []
    unparseable: list[dict] = []
    no_candidates = 0
    usage: dict[str, int] = {}
    for q in queries:
        try:
            # typed as the application's driver bound them (its queryid tells), else as inferred
            recovered = recover_constants(target_conn, match_types(target_conn, runnable(target_conn, q.query_text),
                                                                   q.queryid).text,
                                          seen.get(q.fingerprint),
                                          activity.constants(q.query_text, texts.get(q.queryid)))
            text, _seen = recovered.text, recovered.sets
            shape = analyze_with_catalog(text, catalog)
        except UnparseableQuery as exc:
            unparseable.append({"queryid": q.queryid, "reason": str(exc)})
            continue
        similar = []
        if q.fingerprint in vectors:
            similar = store.similar_optimizations(store_conn, vectors[q.fingerprint],
                                                  limit=settings.similar_limit,
                                                  exclude_fingerprint=q.fingerprint)
        # the values the application sent, per `$n` (the server log): a partial index needs most
        # of them to be its value, a LIKE that starts with a wildcard needs trigrams
        sent = {n: [v[n - 1] for v in _seen if len(v) >= n and v[n - 1] is not None]
                for n in range(1, shape.param_count + 1)} if _seen else {}
        cands, _skips = candidates_for(shape, catalog, min_table_rows=settings.min_table_rows,
                                       mean_rows=q.rows / q.calls if q.calls else None, observed=sent)
        cands = cands[: settings.max_candidates_per_query]
        opinion: dict = {}
        sources = {ddl_text(c): "advisor" for c in cands}
        rewrites: list[str] = []
        if gemini_client is not None:
            ideas = second_opinion(gemini_client, target_conn, q, shape, cands, similar, settings)
            opinion = {k: ideas[k] for k in ("agrees_with_advisor", "rejected", "rationales", "error", "ideas")}
            for key, value in ideas["usage"].items():
                usage[key] = usage.get(key, 0) + value
            for idea in ideas["accepted_indexes"]:
                ddl = ddl_text(idea)
                if ddl in sources:
                    sources[ddl] = "advisor+gemini"
                elif idea.label() in ideas["agrees_with_advisor"]:
                    sources[ddl] = "advisor+gemini"
                    cands.append(idea)
                else:
                    sources[ddl] = "gemini"
                    cands.append(idea)
            rewrites = ideas["accepted_rewrites"]
        if not cands and not rewrites:
            no_candidates += 1
        for cand in cands:
            ddl = ddl_text(cand)
            rows.append({"queryid": q.queryid, "ddl": ddl, "table_name": cand.qualified_table,
                         "columns": list(cand.columns), "reason": cand.reason, "similar": similar,
                         "spec": {**cand.to_spec(), "source": sources.get(ddl, "advisor")},
                         "second_opinion": opinion})
        for rewrite in rewrites:
            rows.append({"queryid": q.queryid, "ddl": rewrite, "table_name": ",".join(shape.tables), "columns": [],
                         "reason": "rewrite suggested by Gemini", "similar": similar,
                         "spec": {"kind": "rewrite", "sql": rewrite, "source": "gemini",
                                  "rationale": opinion.get("rationales", {}).get(rewrite, "")},
                         "second_opinion": opinion})
    rows = _free_names(target_conn, rows)
    store.replace_candidates(store_conn, snap["snapshot_id"], rows)
    drops = [{"ddl": d.ddl, "kind": d.kind, "table_name": f"{d.schema}.{d.table}", "index_name": d.index,
              "size_bytes": d.size_bytes, "reason": d.reason, "evidence": d.evidence}
             for d in drop_recommendations(target_conn)]
    store.replace_drop_recommendations(store_conn, snap["snapshot_id"], drops)
    return {"snapshot_id": snap["snapshot_id"], "queries": len(queries), "candidates": len(rows),
            "drop_recommendations": len(drops), "gemini": "on" if gemini_client is not None else "off",
            "gemini_ideas_accepted": sum(1 for r in rows if r["spec"].get("source") != "advisor"),
            **usage_metadata(usage),
            "queries_without_candidates": no_candidates, "unparseable": len(unparseable),
            "unparseable_detail": unparseable}


def _free_names(conn: psycopg.Connection, rows: list[dict]) -> list[dict]:
    """Candidate rows whose index names collide with no relation of the target (nor with each other)."""
    index_rows = [r for r in rows if r["spec"].get("kind") != "rewrite"]
    named_cands = unique_names(conn, [IndexCandidate.from_spec(r["spec"]) for r in index_rows])
    for row, cand in zip(index_rows, named_cands):
        if cand.name:
            row["spec"] = {**row["spec"], "name": cand.name}
            row["ddl"] = ddl_text(cand)
    return rows


def second_opinion(client, target_conn: psycopg.Connection, q: SlowQuery, shape: QueryShape,
                   cands: list[IndexCandidate], similar: list[dict], settings: AuditSettings) -> dict:
    """Gemini's validated ideas for one statement (its plan, tables, the advisor's candidates and the
    similar past optimizations in the prompt)."""
    plan = None
    try:
        with rolled_back(target_conn, statement_timeout_ms=settings.bench.statement_timeout_ms,
                         lock_timeout_ms=settings.bench.lock_timeout_ms):
            _, doc = generic_cost(target_conn, runnable(target_conn, q.query_text), shape.param_count > 0,
                                  shape.param_count)
            plan = compact_plan(doc)
    except psycopg.Error:
        pass   # the prompt says the plan is unknown
    schemas = sorted({s for s in shape.schemas.values() if s} | {"public"})
    return gemini_ideas(client, query=q.query_text, plan=plan, tables=table_context(target_conn, shape.tables, schemas),
                        candidates=[c.label() for c in cands], similar=similar, conn=target_conn,
                        advisor_candidates=cands)


# -- 4. benchmarked_gains ---------------------------------------------------------------------------

def benchmark_candidates(sandbox_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
                         settings: AuditSettings, progress: Progress | None = None,
                         partition_key: str | None = None) -> dict:
    """Measure every distinct candidate once on the sandbox, against every statement on its table;
    each experiment is rolled back. Statements over several tables are also measured with the best
    candidate of each table together. Every slow statement ends with a measurement or a named
    reason (an `unmeasured` row); with a time budget, the most expensive statements go first and
    what the budget left out is named."""
    started = time.monotonic()
    deadline = started + settings.time_budget_s if settings.time_budget_s > 0 else None

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    budget_reason = f"beyond the time budget ({settings.time_budget_s:g} s)"
    snap = _latest(store_conn, target, partition_key)
    queries = {q.queryid: q for q in store.snapshot_queries(store_conn, snap["snapshot_id"])}
    priority = {qid: n for n, qid in enumerate(sorted(queries, key=lambda q: -queries[q].total_exec_ms))}
    by_ddl: dict[str, tuple[IndexCandidate, list[int]]] = {}
    cands_of: dict[int, list[IndexCandidate]] = {}
    rewrites: list[tuple[int, dict]] = []
    sources: dict[str, str] = {}
    for row in store.candidates(store_conn, snap["snapshot_id"]):
        sources[row["ddl"]] = row["spec"].get("source", "advisor")
        if row["spec"].get("kind") == "rewrite":
            rewrites.append((row["queryid"], row["spec"]))
            continue
        cand = IndexCandidate.from_spec(row["spec"])
        by_ddl.setdefault(row["ddl"], (cand, []))[1].append(row["queryid"])
        cands_of.setdefault(row["queryid"], []).append(cand)
    # the sandbox may be another database than the target: its relation names are checked again
    renamed = unique_names(sandbox_conn, [cand for cand, _ in by_ddl.values()])
    sources.update({ddl_text(new): sources.get(old, "advisor") for new, old in zip(renamed, by_ddl)})
    by_ddl = {ddl_text(new): (new, owners) for new, (_, owners) in zip(renamed, by_ddl.values())}
    # the most expensive statements' candidates first, so a time budget keeps what matters most
    by_ddl = dict(sorted(by_ddl.items(), key=lambda kv: (min(priority.get(q, 1 << 30) for q in kv[1][1]), kv[0])))
    tables = {cand.table for cand, _ in by_ddl.values()}
    rewritten = {qid for qid, _ in rewrites}

    catalog = Catalog(sandbox_conn)
    seen = observed_values.load(store_conn, target, [q.fingerprint for q in queries.values()], settings.observed)
    texts = activity.load(store_conn, target, list(queries), settings.observed)
    items: dict[int, Prepared] = {}
    unmeasured: dict[int, str] = {}
    for n, qid in enumerate(sorted(queries, key=lambda q: priority[q]), 1):
        q = queries[qid]
        # the `$n` typed as the application's driver bound them (matched to its queryid), and those
        # pg_stat_statements made of literals typed as those literals were
        typing = match_types(sandbox_conn, runnable(sandbox_conn, q.query_text), q.queryid)
        recovered = recover_constants(sandbox_conn, typing.text, seen.get(q.fingerprint),
                                      activity.constants(q.query_text, texts.get(qid)))
        text, observed = recovered.text, recovered.sets
        try:
            shape = analyze_with_catalog(text, catalog)
        except UnparseableQuery as exc:
            unmeasured[qid] = f"cannot be parsed: {exc}"
            continue
        if not tables.intersection(shape.tables) and qid not in rewritten:
            if qid not in cands_of:
                hidden = hidden_literals(text)
                unmeasured[qid] = (f"no candidate index: {hidden}" if hidden else
                                   "no candidate index (already indexed, table too small, or nothing an index can serve)")
            continue
        if qid not in cands_of and qid not in rewritten and (hidden := hidden_literals(text)):
            # other statements' candidates are on its table (it is still timed for their side
            # effects), but its own expression lost its constants: that is why it has none
            unmeasured[qid] = f"no candidate index: {hidden}"
        reason = unsafe_reason(shape)
        scan = None
        if reason and shape.kind in ("update", "delete"):
            # never executed: timed by the SELECT that finds the rows it writes, which an index serves
            scan = row_scan(text, parameter_types(sandbox_conn, text))
            if scan is not None:
                try:
                    scan_shape = analyze_with_catalog(scan, catalog)
                except UnparseableQuery:
                    scan = None
                else:
                    reason = unsafe_reason(scan_shape)
                    text, shape = (scan, scan_shape) if reason is None else (text, shape)
        if reason:
            unmeasured[qid] = f"refused by the safety allow-list: {reason}"
            continue
        if out_of_time():
            unmeasured[qid] = budget_reason
            continue
        if progress:
            progress(f"baseline {n}/{len(queries)}: {_one_line(q.query_text, 70)}")
        try:
            items[qid] = prepare(sandbox_conn, qid, text, shape, catalog, settings.bench,
                                 partial_values(shape, cands_of.get(qid, [])),
                                 # a write's row-finding SELECT takes less than the write: rows per call only
                                 target=ValueTarget(q.rows / q.calls if q.calls else None,
                                                    None if scan else q.mean_exec_ms),
                                 observed=observed)
            items[qid].plan.type_match = typing.evidence()
            items[qid].plan.constants = recovered.evidence(settings.bench.show_observed_values)
            if scan is not None:
                items[qid].measured_as = scan
        except psycopg.Error as exc:
            # a statement whose expression lost its constants says that first: the values it could
            # not bind stood for those constants
            unmeasured[qid] = f"{unmeasured[qid]} (and {_unbindable(exc)})" if qid in unmeasured else _unbindable(exc)

    hypo = hypopg_status(sandbox_conn) if settings.bench.use_hypopg else "missing"
    guard = {"statement_timeout_ms": settings.bench.statement_timeout_ms,
             "lock_timeout_ms": settings.bench.lock_timeout_ms}
    rows: list[dict] = []
    screened = 0
    lazy = settings.bench.side_effects == "chosen"
    # statements over several tables that own candidates on at least two of them: their
    # configuration is measured before their members are timed in full (a member alone keeps the
    # other tables' scans, so its own timing is a close call that only ranks the table's candidates)
    configured = {qid for qid in items if len({c.table for c in cands_of.get(qid, [])}) >= 2} if lazy else set()
    pending: dict[str, list[dict]] = {}   # ddl -> side effects re-planned but not timed (deferred rows)
    with twin_of(sandbox_conn, settings.bench) as twin:
        for n, (ddl, (cand, owners)) in enumerate(by_ddl.items(), 1):
            owner_items = [items[qid] for qid in owners if qid in items]
            if not owner_items:
                continue
            if out_of_time():
                rows.extend(_not_run(ddl, cand, owner_items, budget_reason))
                continue
            others = [item for qid, item in items.items() if qid not in owners and cand.table in item.shape.tables]
            whatif_costs = None
            if hypo != "missing":
                whatif_costs = whatif(sandbox_conn, cand, owner_items + others, status=hypo, **guard)
                if not worth_building(whatif_costs) and not _or_branch(cand, owner_items):
                    screened += 1
                    rows.extend(_screened(ddl, cand, owner_items, whatif_costs))
                    continue
            if progress:
                progress(f"candidate {n}/{len(by_ddl)}: {cand.label()} "
                         f"({len(owner_items)} statement(s), {len(others)} other(s) on the table)")
            results = evaluate_candidate(sandbox_conn, cand, owner_items, others, settings.bench, twin=twin,
                                         stop=lambda: budget_reason if out_of_time() else None, defer_others=lazy,
                                         configured=configured)
            for row in results:
                row["evidence"]["source"] = sources.get(ddl, "advisor")
                if whatif_costs is not None:
                    row["evidence"]["whatif"] = whatif_costs.get(row["queryid"])
            # side effects re-planned only, and owners with a short look only: timed if it is picked
            later = [r for r in results if r["status"] == DEFERRED] + [
                {"queryid": r["queryid"], "status": DEFERRED,
                 "evidence": {"owner": True, "full": r["evidence"].get("planner_saving") is None
                              or r["evidence"]["planner_saving"] >= PLANNER_MIN_SAVING}}
                for r in results if r["evidence"].get("short_look")]
            if later:
                pending[ddl] = later
            rows.extend(r for r in results if r["status"] != DEFERRED)
        measured_sets: set[tuple[int, tuple[str, ...]]] = set()

        def measure_configurations() -> int:
            # statements that chose the same set share one build of it; a statement is measured
            # again only when the best candidates of its tables changed
            groups: dict[tuple[str, ...], tuple[list, list[int]]] = {}
            for qid, members in configuration_members(items, rows, by_ddl).items():
                key = tuple(ddl_text(c) for c, _ in members)
                if (qid, key) not in measured_sets:
                    groups.setdefault(key, (members, []))[1].append(qid)
            done = 0
            for key, (members, qids) in groups.items():
                measured_sets.update((q, key) for q in qids)
                label = " + ".join(c.label() for c, _ in members)
                if out_of_time():
                    rows.extend(_not_run(";\n".join(key), members[0][0], [items[q] for q in qids], budget_reason,
                                         label=label))
                    continue
                if progress:
                    progress(f"configuration {label} for {len(qids)} statement(s)")
                rows.extend(evaluate_configuration_for(sandbox_conn, members, [items[q] for q in qids],
                                                       settings.bench, twin=twin))
                done += len(qids)
            return done

        # configurations first: an owner they serve far better needs no full timing of its own
        configurations = measure_configurations()
        rounds = 0
        while True:
            rounds += _time_chosen_side_effects(sandbox_conn, twin, store_conn, snap, settings, queries, items,
                                                by_ddl, rows, pending, out_of_time, budget_reason, progress)
            more = measure_configurations()
            configurations += more
            if not more or out_of_time():
                break
    _note_untimed(rows, pending, budget_reason if out_of_time() else None)
    for qid, spec in rewrites:
        if qid in items:
            if out_of_time():
                continue
            if progress:
                progress(f"rewrite of statement {qid}: proving same rows, then timing")
            rows.append(evaluate_rewrite(sandbox_conn, items[qid], spec["sql"], settings.bench, spec))
    rows.extend(_unmeasured_rows(queries, rows, unmeasured))
    store.replace_benchmarks(store_conn, snap["snapshot_id"], rows)
    measured = [r for r in rows if r["status"] == "measured"]
    left = [r for r in rows if r["status"] == "unmeasured"]
    return {"snapshot_id": snap["snapshot_id"], "candidates_measured": len({r["ddl"] for r in measured}),
            "candidates_failed": len({r["ddl"] for r in rows if r["status"] == "failed"}),
            "statements_prepared": len(items),
            "cross_statement_results": sum(1 for r in measured if r["evidence"].get("cross_statement")),
            "side_effects_untimed": sum(1 for v in pending.values() for r in v if not r["evidence"].get("owner")),
            "short_looks_kept": sum(1 for r in measured if r["evidence"].get("short_look")),
            "looks_served_by_configuration": sum(1 for r in measured if r["evidence"].get("served_by_configuration")),
            "selection_rounds": rounds,
            "configurations_measured": configurations,
            "regressions": sum(1 for r in measured if r["evidence"].get("regression")),
            "queries_skipped": len(left), "skipped_detail": [{"queryid": r["queryid"], "reason": r["evidence"]["why"]}
                                                             for r in left],
            "unmeasured_statements": sum(1 for r in left if not r["evidence"].get("no_candidate")),
            "skipped_for_time_budget": sum(1 for r in rows if r["evidence"].get("why") == budget_reason),
            "seconds": round(time.monotonic() - started, 1),
            # statements costed by the planner only because a `$n` could not be bound, with the reason
            "unbound_parameters": [{"queryid": qid, "reason": "; ".join(item.plan.problems)}
                                   for qid, item in items.items() if item.has_params and not item.param_sets],
            "costing": "hypopg" if hypo != "missing" else "real indexes in rolled-back transactions",
            "interleaved": "yes (twin connection)" if settings.bench.interleave else "no",
            "screened_by_hypopg": screened}


def _picked(selection: Selection) -> set[str]:
    return {c.ddl for c in selection.chosen} | {c.ddl for c in selection.next_in_line}


def _planner_credit(row: dict) -> dict:
    """A deferred side effect as the selection would see it if the clock agreed with the planner:
    the planner's expected saving as the gain (below the bar, no credit at all)."""
    return {**row, "status": "measured", "evidence": {**row["evidence"], "planner_only": True}}


def settle_side_effects(rows: list[dict], pending: dict[str, list[dict]], order: list[str],
                        select: Callable[[list[dict]], Selection],
                        time_them: Callable[[str, list[dict]], list[dict]],
                        out_of_time: Callable[[], bool] = lambda: False) -> int:
    """Time the deferred side effects where they can change the decision, and only there.

    A side effect (another statement on the table whose plan uses the index) does two things in the
    selection: a regression there declines the index, a gain there credits it. Neither can matter
    for an index the selection does not pick, unless the credit could make it picked. So: select
    on what is measured (`base`), and again with every deferred side effect credited with the
    planner's expected saving (`hopeful`: a side effect PostgreSQL itself expects to save less than
    the bar gets no credit); time the side effects of every index either selection picks
    (`time_them(ddl, deferred rows)` returns the timed rows, added to `rows`); select again, since
    a regression now found may decline a pick and bring in another; until every picked index has
    its side effects timed. Each round times at least one index's, so the rounds end. `pending`
    (ddl -> deferred rows) keeps what was never timed; `order` is the candidates' order. Returns the
    number of rounds."""
    rounds = 0
    while pending and not out_of_time():
        base = select(rows)
        credits = [_planner_credit(r) for deferred in pending.values() for r in deferred
                   if not r["evidence"].get("owner")]
        hopeful = select(rows + credits)
        for r in rows:
            r["evidence"].pop("served_by_configuration", None)   # said again below where it still holds
        want: dict[str, list[dict]] = {}
        for ddl in order:
            picking = [s for s in (base, hopeful) if ddl in _picked(s)]
            if ddl not in pending or not picking:
                continue
            # an owner's short look stays a look where every selection that picks the index serves
            # the statement with a measured configuration far faster than the index alone
            need = [r for r in pending[ddl] if not r["evidence"].get("owner")
                    or not all(served_by_configuration(rows, ddl, r["queryid"], s) for s in picking)]
            if need:
                want[ddl] = need
        if not want:
            break
        rounds += 1
        for ddl, need in want.items():
            if out_of_time():
                break
            pending[ddl] = [r for r in pending[ddl] if not any(r is n for n in need)]
            if not pending[ddl]:
                del pending[ddl]
            rows.extend(time_them(ddl, need))
    return rounds


def served_by_configuration(rows: list[dict], ddl: str, queryid: int, selection: Selection) -> bool:
    """Whether the selection serves the statement with a measured configuration that every run
    shows far faster than the short look of `ddl` alone (`clearly_apart`: 4.4x on every run of the
    parameter sets both timed). The index alone then cannot change what the statement is credited
    with, so its look is not timed in full; the look's evidence names the configuration."""
    look = next((r for r in rows if r["ddl"] == ddl and r["queryid"] == queryid and r["status"] == "measured"
                 and r["evidence"].get("short_look")), None)
    assigned = selection.assignment.get(queryid)
    if look is None or assigned is None or not assigned["evidence"].get("configuration"):
        return False
    alone = (look["evidence"].get("after") or {}).get("timings_ms") or []
    together = (assigned["evidence"].get("after") or {}).get("timings_ms") or []
    n = min(len(alone), len(together))
    if not n or not clearly_apart(alone[:n], together[:n]):
        return False
    look["evidence"]["served_by_configuration"] = {
        "index": assigned["evidence"].get("index"), "ms_after": assigned["ms_after"],
        "why": "a measured configuration serves the statement far faster (every run 4.4x) than this index "
               "alone, so its short look was not timed in full"}
    return True


def _time_chosen_side_effects(conn: psycopg.Connection, twin: psycopg.Connection | None,
                              store_conn: psycopg.Connection, snap: dict, settings: AuditSettings,
                              queries: dict[int, SlowQuery], items: dict[int, Prepared],
                              by_ddl: dict[str, tuple[IndexCandidate, list[int]]], rows: list[dict],
                              pending: dict[str, list[dict]], out_of_time: Callable[[], bool],
                              budget_reason: str, progress: Progress | None) -> int:
    """`settle_side_effects` with the optimization_log stage's own selection (select_for_snapshot,
    on the same rows, so what it finally picks has every side effect timed) and the candidate built
    again on the sandbox to time them."""
    qlist = list(queries.values())

    def select(benchmarks: list[dict]) -> Selection:
        return select_for_snapshot(store_conn, snap, settings, queries=qlist, benchmarks=benchmarks, explain=False)

    def time_them(ddl: str, deferred: list[dict]) -> list[dict]:
        cand = by_ddl[ddl][0]
        others = [items[r["queryid"]] for r in deferred if r["queryid"] in items and not r["evidence"].get("owner")]
        again = [items[r["queryid"]] for r in deferred if r["queryid"] in items and r["evidence"].get("owner")]
        owner = next((r["evidence"] for r in rows if r["ddl"] == ddl and r["status"] == "measured"), {})
        if progress:
            progress(f"side effects of {cand.label()} (picked): {len(others)} statement(s), "
                     f"{len(again)} owner(s) timed in full")
        full = {r["queryid"] for r in deferred if r["evidence"].get("owner") and r["evidence"].get("full")}
        timed = time_side_effects(conn, cand, others, settings.bench, twin=twin, measured=owner,
                                  stop=lambda: budget_reason if out_of_time() else None,
                                  known=sibling_timings(rows, cand), again=again, full=full)
        redone = {r["queryid"] for r in timed if r["evidence"].get("timed_again")}
        rows[:] = [r for r in rows if not (r["ddl"] == ddl and r["queryid"] in redone
                                           and r["evidence"].get("short_look"))]
        for row in timed:
            row["evidence"]["source"] = owner.get("source", "advisor")
        return timed

    return settle_side_effects(rows, pending, list(by_ddl), select, time_them, out_of_time)


def _note_untimed(rows: list[dict], pending: dict[str, list[dict]], budget: str | None) -> None:
    """The owners' evidence names the side effects left untimed, and why."""
    for ddl, later in pending.items():
        deferred = [r for r in later if not r["evidence"].get("owner")]
        if not deferred:
            continue
        note = {"statements": sorted(r["queryid"] for r in deferred),
                "planner_saving": {str(r["queryid"]): r["evidence"].get("planner_saving") for r in deferred},
                "why": budget or "not picked by the selection, so they could not change it"}
        for row in rows:
            if row["ddl"] == ddl and not row["evidence"].get("cross_statement"):
                row["evidence"]["side_effects_untimed"] = note


def _unbindable(exc: psycopg.Error) -> str:
    """A named reason for a statement whose sampled values the server refused."""
    first = str(exc).strip().splitlines()[0]
    if (exc.sqlstate or "").startswith("22") or exc.sqlstate in ("42P18", "42804", "42883", "08P01"):
        return f"cannot bind its parameters: {first}"
    return f"cannot be measured: {first}"


def _not_run(ddl: str, cand: IndexCandidate, owners: list[Prepared], why: str, label: str | None = None) -> list[dict]:
    return [{"queryid": item.queryid, "ddl": ddl, "status": "skipped", "cost_before": None, "cost_after": None,
             "ms_before": None, "ms_after": None, "estimated_gain_pct": None, "measured_gain_pct": None,
             "confidence": None, "evidence": {"index": label or cand.label(), "reason": cand.reason, "why": why,
                                              "spec": cand.to_spec()}} for item in owners]


def _unmeasured_rows(queries: dict[int, SlowQuery], rows: list[dict], unmeasured: dict[int, str]) -> list[dict]:
    """One `unmeasured` row for every slow statement without a measurement: its named reason."""
    measured = {r["queryid"] for r in rows if r["status"] in ("measured", "screened")}
    own = {r["queryid"] for r in rows if r["status"] in ("measured", "screened")
           and not r["evidence"].get("cross_statement")}
    out = []
    for qid in queries:
        # timed only as a side effect of other statements' candidates, a statement with no candidate
        # of its own still says why it has none (a constant only the log keeps)
        if qid in measured and (qid in own or not (unmeasured.get(qid) or "").startswith("no candidate")):
            continue
        why = unmeasured.get(qid)
        if why is None:
            mine = [r for r in rows if r["queryid"] == qid]
            failed = next((r for r in mine if r["status"] == "failed"), None)
            skipped = next((r for r in mine if r["status"] == "skipped"), None)
            why = (f"benchmark failed: {failed['evidence'].get('error')}" if failed
                   else skipped["evidence"]["why"] if skipped
                   else "no candidate index (already indexed, table too small, or nothing an index can serve)")
        out.append({"queryid": qid, "ddl": "", "status": "unmeasured", "cost_before": None, "cost_after": None,
                    "ms_before": None, "ms_after": None, "estimated_gain_pct": None, "measured_gain_pct": None,
                    "confidence": None, "evidence": {"why": why, "no_candidate": why.startswith("no candidate")}})
    return out


def configuration_members(items: dict[int, Prepared], rows: list[dict],
                          by_ddl: dict[str, tuple[IndexCandidate, list[int]]]
                          ) -> dict[int, list[tuple[IndexCandidate, dict]]]:
    """For each statement over several tables: the best measured candidate of each table, when at
    least two tables have one. Best: used by the plan, then the gain — candidates within the clock's
    noise of the best gain (10 points, or overlapping bootstrap intervals) tie, and so do candidates
    whose plan reads the tables the same way as the best's (`_access`), and ties go to the smaller
    index (by powers of two), the planner's lower cost, then the name, so the same set is measured on
    every run."""
    out: dict[int, list[tuple[IndexCandidate, dict]]] = {}
    for qid, item in sorted(items.items()):
        mine = [r for r in rows if r["queryid"] == qid and r["status"] == "measured" and r["ddl"] in by_ddl]
        branches = _branch_members(item.shape, mine, by_ddl)
        if len(set(item.shape.tables)) < 2 and len(branches) < 2:
            continue
        per_table: dict[str, list[dict]] = {}
        for r in mine:
            per_table.setdefault(by_ddl[r["ddl"]][0].qualified_table, []).append(r)
        best: dict[str, dict] = {}
        for table, candidates in per_table.items():
            if any(by_ddl[r["ddl"]][0].qualified_table == table for r in branches):
                continue   # an OR's table takes an index per branch
            used = [r for r in candidates if r["evidence"].get("index_used")] or candidates
            top_row = max(used, key=lambda r: _gain(r) if _gain(r) is not None else -1e9)
            top = _gain(top_row) if _gain(top_row) is not None else -1e9
            top_access = _access(top_row, by_ddl[top_row["ddl"]][0])
            close = [r for r in used if (_gain(r) if _gain(r) is not None else -1e9) >= top - MEMBER_NOISE_PCT
                     or _overlaps(r, top_row)
                     or (top_access is not None and _access(r, by_ddl[r["ddl"]][0]) == top_access)]
            best[table] = min(close, key=lambda r: (
                round(math.log2((r["evidence"].get("index_bytes") or 0) + 1)),
                round(math.log2((r["cost_after"] or 0) + 1) * 2), r["ddl"]))
        chosen = sorted(best.values(), key=lambda r: r["ddl"]) + branches
        if len(chosen) >= 2 and (len(best) >= 2 or len(branches) >= 2):
            out[qid] = [(by_ddl[r["ddl"]][0], r["evidence"]) for r in sorted(chosen, key=lambda r: r["ddl"])]
    return out


def _branch_members(shape: QueryShape, rows: list[dict], by_ddl: dict[str, tuple[IndexCandidate, list[int]]]
                    ) -> list[dict]:
    """For `a = $1 OR b = $2` on one table: one measured candidate led by each branch's column (the
    plainest: one made for the branch, then the smallest, then the name). Alone none changes the
    plan; together PostgreSQL combines them (BitmapOr)."""
    out: list[dict] = []
    for table, branches in shape.any_of:
        for branch in branches:
            keys = {p.column for p in branch}
            fits = [r for r in rows if by_ddl[r["ddl"]][0].table == table and by_ddl[r["ddl"]][0].columns[0] in keys]
            if fits:
                pick = min(fits, key=lambda r: (not by_ddl[r["ddl"]][0].reason.startswith(OR_BRANCH),
                                                round(math.log2((r["evidence"].get("index_bytes") or 0) + 1)), r["ddl"]))
                if pick not in out:
                    out.append(pick)
    return out


def _or_branch(cand: IndexCandidate, owners: list[Prepared]) -> bool:
    """Whether the candidate is led by a column of an OR branch of a statement it was made for: the
    planner has no use for it alone, so no what-if screening may skip it."""
    return any(t == cand.table and cand.columns[0] in {p.column for b in branches for p in b}
               for item in owners for t, branches in item.shape.any_of)


MEMBER_NOISE_PCT = 10.0   # gains this close (percentage points) tie when choosing a configuration's member


def _access(row: dict, cand: IndexCandidate) -> str | None:
    """How the statement's plan with the candidate reads its tables: every node's type, relation,
    join type and index condition, the candidate's own index named alike whatever its name. Two
    candidates of a table that give the statement the same access (`(batch)` and `(batch,
    device_serial)` both scanned on `batch = $1`) make it do the same work, whatever the clock said
    of one run; None without a plan."""
    plan = (row["evidence"].get("after") or {}).get("plan")
    return plan_shape(plan, {index_name(cand)}, ACCESS_KEYS) if plan else None


ACCESS_KEYS = ("Node Type", "Relation Name", "Join Type", "Index Cond")


def _overlaps(row: dict, best: dict) -> bool:
    """Whether the clock cannot tell `row` from `best`: their bootstrap intervals of the time ratio
    (after / before) overlap."""
    a = (row["evidence"].get("confidence_parts") or {}).get("ratio_ci")
    b = (best["evidence"].get("confidence_parts") or {}).get("ratio_ci")
    return bool(a and b and a[0] <= b[1])


def _screened(ddl: str, cand: IndexCandidate, owners: list[Prepared], costs: dict[int, dict]) -> list[dict]:
    why = (f"HypoPG: the planner would not use {cand.label()} or it saves under "
           f"{int(SCREEN_MIN_SAVING * 100)}% of any statement's cost, so it was not built")
    return [{"queryid": item.queryid, "ddl": ddl, "status": "screened", "cost_before": costs[item.queryid]["cost_before"],
             "cost_after": costs[item.queryid]["cost_after"], "ms_before": None, "ms_after": None,
             "estimated_gain_pct": None, "measured_gain_pct": None, "confidence": 0.0,
             "evidence": {"index": cand.label(), "reason": cand.reason, "why": why, "whatif": costs[item.queryid],
                          "spec": cand.to_spec()}} for item in owners]


def analyze_with_catalog(query: str, catalog: Catalog) -> QueryShape:
    """The statement's text (sqlglot), completed by what its plan shows (advisor/plan.py)."""
    return analyze_planned(query, catalog)


def recommend_statement(conn: psycopg.Connection, query: str, settings: AuditSettings = AuditSettings(),
                        *, mean_rows: float | None = None, queryid: int | None = None) -> dict | None:
    """The whole advisor for one statement on one connection: candidates, measurement, the best
    index if it clears the bar (None otherwise). Used by tests and the quality benchmarks. With the
    statement's pg_stat_statements queryid, its `$n` are typed as the application bound them."""
    catalog = Catalog(conn)
    query = runnable(conn, query)
    query = match_types(conn, query, queryid).text if queryid is not None else typed_statement(conn, query)
    shape = analyze_with_catalog(query, catalog)
    if unsafe_reason(shape):
        return None
    cands, _ = candidates_for(shape, catalog, min_table_rows=settings.min_table_rows, mean_rows=mean_rows)
    results = benchmark_statement(conn, query, shape, cands[: settings.max_candidates_per_query], catalog,
                                  settings.bench, target=ValueTarget(mean_rows) if mean_rows is not None else None)
    return best_per_query([{**r, "queryid": 0} for r in results], settings.min_gain_pct).get(0)


def unsafe_reason(shape: QueryShape) -> str | None:
    """Why a statement must not be executed on the sandbox, or None."""
    if not shape.is_read_only:
        return f"{shape.kind} statements are costed for write overhead, never executed"
    # the same deny-list that guards Gemini's SQL: effects a rollback cannot undo, or waits
    for name in sorted(shape.functions):
        if denied_function(name):
            return f"calls {name}(), which a rollback cannot undo"
    return None


# -- 5. optimization_log ---------------------------------------------------------------------------

GAIN_NOISE_PCT = 5.0   # gains this close to the best one tie (the clock's noise)


def best_per_query(benchmarks: list[dict], min_gain_pct: float) -> dict[int, dict]:
    """For each statement, among its measured candidates that clear the bar and are within the
    clock's noise of the best gain: the one the planner clearly prefers (costs within ~40% tie: an
    index that avoids a sort or the heap wins), then the clearly smaller index (sizes within 2x
    tie), then the higher confidence."""
    eligible: dict[int, list[dict]] = {}
    for b in benchmarks:
        if b["status"] != "measured" or b["evidence"].get("cross_statement") or b["evidence"].get("configuration"):
            continue
        gain = _gain(b)
        if gain is None or gain < min_gain_pct or not b["evidence"].get("index_used"):
            continue
        eligible.setdefault(b["queryid"], []).append(b)
    best: dict[int, dict] = {}
    for queryid, rows in eligible.items():
        top = max(_gain(r) for r in rows)
        close = [r for r in rows if _gain(r) >= top - GAIN_NOISE_PCT]
        best[queryid] = max(close, key=_rank)
    return best


def _gain(b: dict) -> float | None:
    return b["measured_gain_pct"] if b["measured_gain_pct"] is not None else b["estimated_gain_pct"]


def _rank(b: dict) -> tuple[float, float, float]:
    cost_after = b["cost_after"] if b["cost_after"] is not None else float("inf")
    size = b["evidence"].get("index_bytes") or 0
    return (-round(math.log2(cost_after + 1) * 2), -round(math.log2(size + 1)), b["confidence"] or 0.0)


def select_for_snapshot(store_conn: psycopg.Connection, snap: dict, settings: AuditSettings, *,
                        queries: list[SlowQuery] | None = None, benchmarks: list[dict] | None = None,
                        explain: bool = True) -> Selection:
    """The workload-wide choice for one snapshot (pure given the store's rows, so the log and the
    report always agree); callers that already hold the rows pass them. Each row is taken as its
    trusted parameter sets measured it (bench.evaluate.trusted_view), and a measurement within
    noise of the previous audit's is taken as that one (advisor.stability). explain: also select on
    this audit's own timings alone, to name what the previous verdict kept (selection.note_kept)."""
    if queries is None:
        queries = store.snapshot_queries(store_conn, snap["snapshot_id"])
    if benchmarks is None:
        benchmarks = store.benchmarks(store_conn, snap["snapshot_id"])
    budget = int(settings.storage_budget_mb * 1_048_576) if settings.storage_budget_mb > 0 else None
    rates = {q.queryid: q.calls_per_second(snap.get("window_seconds")) for q in queries}
    before = previous_audit(store_conn, snap)

    def select(rows: list[dict], previous: PreviousVerdicts | None) -> Selection:
        return select_indexes(rows, rates,
                              table_writes=snap.get("table_writes") or {},
                              min_gain_pct=settings.min_gain_pct, storage_budget_bytes=budget,
                              max_indexes=settings.max_indexes or None,
                              observed_ms={q.queryid: q.mean_exec_ms for q in queries}, previous=previous)

    own = own_view(benchmarks)
    selection = select(anchored_view(own, queries, before), previous_verdicts(before, queries))
    if selection.stability:
        selection.stability["previous_snapshot"] = (before or {}).get("snapshot_id")
        if explain:
            note_kept(selection, select(own, None))
    return selection


def own_view(benchmarks: list[dict]) -> list[dict]:
    """The rows as this audit's own timings say: where some parameter sets were guessed and others
    observed or calibrated, the latter decide; a measurement timed once per set takes the
    statement's baseline from its other measurements."""
    return pooled_baselines([trusted_view(b) for b in benchmarks])


def anchored_view(rows: list[dict], queries: list[SlowQuery], before: dict | None) -> list[dict]:
    """The rows the selection decides on: a measurement within noise of the previous audit's stands
    as that one (advisor.stability.anchor)."""
    if not before or not before.get("measurements"):
        return rows
    return stability.anchor(rows, {q.queryid: q.fingerprint for q in queries}, before["measurements"])


def previous_audit(store_conn: psycopg.Connection | None, snap: dict) -> dict | None:
    """The previous audit stored with the snapshot (its proposals and measurements), or None."""
    if "previous_audit" in snap:
        return snap["previous_audit"]
    if store_conn is None or snap.get("snapshot_id") is None:
        return None
    return store.snapshot_previous_audit(store_conn, snap["snapshot_id"])


def previous_audit_summary(store_conn: psycopg.Connection, target: str) -> dict:
    """What the next audit of `target` weighs of the previous one, read before its snapshot replaces
    anything: the indexes proposed and not settled (the log's proposed rows), and the latest
    audit's measurements as its own selection saw them (its anchoring included)."""
    prior = store.latest_snapshot(store_conn, target)
    proposed = store.proposed_verdicts(store_conn, target)
    if prior is None:
        return audit_summary(None, [], [], None, proposed)
    return audit_summary(prior["snapshot_id"], store.snapshot_queries(store_conn, prior["snapshot_id"]),
                         store.benchmarks(store_conn, prior["snapshot_id"]), previous_audit(store_conn, prior),
                         proposed)


def audit_summary(snapshot_id: int | None, queries: list[SlowQuery], benchmarks: list[dict],
                  before: dict | None, proposed: list[dict]) -> dict:
    """An audit as the next one weighs it: the proposals (fingerprint, ddl) and the measurements as
    its selection saw them (`before`: the audit before it, whose anchoring it applied)."""
    rows = anchored_view(own_view(benchmarks), queries, before)
    return {"snapshot_id": snapshot_id,
            "proposed": [{"fingerprint": r["fingerprint"], "ddl": r["ddl"]} for r in proposed],
            "measurements": stability.summarize(rows, {q.queryid: q.fingerprint for q in queries})}


def previous_verdicts(before: dict | None, queries: list[SlowQuery]) -> PreviousVerdicts:
    """The previous audit's proposals and measured statements, mapped to this snapshot's statements
    by fingerprint."""
    if not before:
        return PreviousVerdicts()
    ids: dict[str, list[int]] = {}
    for q in queries:
        ids.setdefault(q.fingerprint, []).append(q.queryid)
    proposed: dict[str, set[int]] = {}
    for row in before.get("proposed") or []:
        for qid in ids.get(row["fingerprint"], []):
            proposed.setdefault(row["ddl"], set()).add(qid)
    measured = {qid for m in before.get("measurements") or [] for qid in ids.get(m["fingerprint"], [])}
    return PreviousVerdicts(proposed=proposed, measured=measured)


UNREPRESENTATIVE = 3.0   # sampled values this much slower than the application's own calls


def rewrite_choices(selection: Selection, benchmarks: list[dict], min_gain_pct: float) -> dict[int, dict]:
    """Proven rewrites worth recommending: the best per statement, when no chosen index serves the
    statement or the rewrite gains clearly more than the index does."""
    best: dict[int, dict] = {}
    for b in benchmarks:
        if (b["evidence"].get("spec") or {}).get("kind") != "rewrite" or b["status"] != "measured":
            continue
        gain = b["measured_gain_pct"]
        if gain is None or gain < min_gain_pct:
            continue
        if b["queryid"] not in best or gain > best[b["queryid"]]["measured_gain_pct"]:
            best[b["queryid"]] = b
    out = {}
    for qid, b in best.items():
        index = selection.assignment.get(qid)
        if index is None or b["measured_gain_pct"] > (_gain(index) or 0) + GAIN_NOISE_PCT:
            out[qid] = b
    return out


def recommended_indexes(selection: Selection, row: dict) -> list[tuple[str, IndexChoice]]:
    """The index(es) a statement's assigned benchmark row stands for: one, or a configuration's members."""
    return [(ddl, selection.choice_of(ddl)) for ddl in members_of(row)]


def next_in_line(selection: Selection) -> list[dict]:
    """Proven indexes beyond max_indexes, ranked, with their evidence (for the JSON and the report)."""
    out = []
    for choice in selection.next_in_line:
        best = max(choice.rows.values(), key=lambda r: _gain(r) or 0, default=None)
        out.append({"rank": choice.rank, "ddl": choice.ddl, "table": choice.table, "index_bytes": choice.index_bytes,
                    "serves_queryids": choice.serves(),
                    "net_benefit_ms_per_s": round(choice.net_benefit_ms_per_s, 6),
                    "read_benefit_ms_per_s": round(choice.read_benefit_ms_per_s, 6),
                    "write_cost_ms_per_s": round(choice.write_cost_ms_per_s, 6),
                    "measured_gain_pct": best["measured_gain_pct"] if best else None,
                    "confidence": best["confidence"] if best else None,
                    "evidence": {q: {"measured_gain_pct": r["measured_gain_pct"], "confidence": r["confidence"],
                                     "ms_before": r["ms_before"], "ms_after": r["ms_after"],
                                     "verdict": r["evidence"].get("verdict")}
                                 for q, r in sorted(choice.rows.items())}})
    return out


def unmeasured(benchmarks: list[dict]) -> list[dict]:
    """Slow statements that ended without a measurement, each with its named reason."""
    return [{"queryid": b["queryid"], "reason": b["evidence"]["why"]}
            for b in benchmarks if b["status"] == "unmeasured" and not b["evidence"].get("no_candidate")]


def adjusted_confidence(row: dict, choice: IndexChoice | None, observed_ms: float | None = None,
                        min_gain_pct: float = 10.0) -> float:
    """The confidence a reviewer reads (see confidence_basis)."""
    return confidence_basis(row, choice, observed_ms, min_gain_pct)[0]


def confidence_basis(row: dict, choice: IndexChoice | None, observed_ms: float | None = None,
                     min_gain_pct: float = 10.0) -> tuple[float, list[str]]:
    """The benchmark's confidence taken from the parameter sets whose values stand for the
    application's (guessed values alone stay below the pull-request bar), lowered in proportion
    to the index's upkeep when it is marginal, and kept below the bar when the sampled values ran
    far slower than the application's calls (the sample then tested a heavier case than the workload
    sends). Returns the confidence and what changed it."""
    notes: list[str] = []
    confidence, why = trusted_confidence(row["evidence"], row["confidence"] or 0.0,
                                         cross=bool(row["evidence"].get("cross_statement")))
    if why:
        notes.append(why)
    if row["evidence"].get("source") == "advisor+gemini":
        # the advisor and Gemini proposed the same index, and the clock agreed: a little more sure;
        # Gemini alone never raises a confidence
        confidence = combined_confidence(confidence, gemini_agrees=True,
                                         clock_confirms=(_gain(row) or 0) >= min_gain_pct)
    if choice is not None and choice.marginal and choice.read_benefit_ms_per_s > 0:
        confidence *= max(0.0, 1.0 - choice.write_cost_ms_per_s / choice.read_benefit_ms_per_s)
        notes.append(f"marginal: write upkeep {choice.write_cost_ms_per_s:.3f} ms/s against reads "
                     f"{choice.read_benefit_ms_per_s:.3f} ms/s")
    if observed_ms and row["ms_before"] and row["ms_before"] > UNREPRESENTATIVE * observed_ms \
            and confidence > GUESSED_CAP:
        confidence = GUESSED_CAP
        notes.append(f"the sampled values ran {row['ms_before'] / observed_ms:.1f}x slower than the application's "
                     "calls: they tested a heavier case than the workload sends")
    if row["evidence"].get("cross_statement"):
        # a side effect on another statement never carries a pull request by itself; said even when
        # the clock already put it below the cap, so no reader takes it for a pending proposal
        confidence = min(confidence, SIDE_EFFECT_CAP)
        notes.append("a side effect on a statement the index was not proposed for")
    return round(confidence, 3), notes


def write_log(store_conn: psycopg.Connection, *, target: str, settings: AuditSettings,
              partition_key: str | None = None) -> dict:
    snap = _latest(store_conn, target, partition_key)
    queries = {q.queryid: q for q in store.snapshot_queries(store_conn, snap["snapshot_id"])}
    benches = store.benchmarks(store_conn, snap["snapshot_id"])
    selection = select_for_snapshot(store_conn, snap, settings, queries=list(queries.values()), benchmarks=benches)
    rewrites = rewrite_choices(selection, benches, settings.min_gain_pct)
    served = {*selection.assignment, *rewrites}
    vectors = store.embeddings_for(store_conn, [queries[qid].fingerprint for qid in served])
    similar = {c["queryid"]: c["similar"] for c in store.candidates(store_conn, snap["snapshot_id"])}
    rows = []
    for queryid, b in selection.assignment.items():
        q = queries[queryid]
        for ddl, choice in recommended_indexes(selection, b):
            evidence = dict(b["evidence"])
            evidence.update(calls=q.calls, total_exec_ms=q.total_exec_ms, mean_exec_ms=q.mean_exec_ms,
                            cost_before=b["cost_before"], cost_after=b["cost_after"],
                            ms_before=b["ms_before"], ms_after=b["ms_after"],
                            read_benefit_ms_per_s=round(choice.read_benefit_ms_per_s, 6),
                            write_cost_ms_per_s=round(choice.write_cost_ms_per_s, 6),
                            **({"write_notes": choice.write_notes} if choice.write_notes else {}),
                            serves_queryids=choice.serves(),
                            sampled_vs_observed=round(b["ms_before"] / q.mean_exec_ms, 2)
                            if b["ms_before"] and q.mean_exec_ms else None,
                            similar_optimizations=similar.get(queryid, []))
            confidence, evidence["confidence_notes"] = confidence_basis(b, choice, q.mean_exec_ms, settings.min_gain_pct)
            if choice is not None and choice.previous_verdict:
                evidence["previous_verdict"] = choice.previous_verdict
            shared = " (shared with another statement)" if evidence.get("cross_statement") else ""
            if evidence.get("configuration"):
                others = [m["label"] for m in evidence["configuration"] if m["ddl"] != ddl]
                label = next(m["label"] for m in evidence["configuration"] if m["ddl"] == ddl)
                text = f"Create index {label}, together with {', '.join(others)} (measured as a set)"
            else:
                text = f"Create index {evidence['index']} ({evidence['reason']}){shared}"
            rows.append({
                "target": target, "fingerprint": q.fingerprint, "queryid": queryid,
                "query_text": q.query_text, "recommendation": text,
                "kind": "index", "ddl": ddl, "performance_gain": b["measured_gain_pct"],
                "estimated_gain": b["estimated_gain_pct"],
                "confidence": confidence,
                "embedding": vectors.get(q.fingerprint), "evidence": evidence, "snapshot_id": snap["snapshot_id"],
            })
    for queryid, b in rewrites.items():
        q = queries[queryid]
        evidence = {**b["evidence"], "calls": q.calls, "total_exec_ms": q.total_exec_ms,
                    "mean_exec_ms": q.mean_exec_ms, "ms_before": b["ms_before"], "ms_after": b["ms_after"],
                    "similar_optimizations": similar.get(queryid, [])}
        rows.append({
            "target": target, "fingerprint": q.fingerprint, "queryid": queryid, "query_text": q.query_text,
            "recommendation": f"Rewrite the statement (proven to return the same rows): {evidence['reason']}",
            "kind": "rewrite", "ddl": b["ddl"], "performance_gain": b["measured_gain_pct"],
            "estimated_gain": b["estimated_gain_pct"],
            "confidence": adjusted_confidence(b, None, q.mean_exec_ms, settings.min_gain_pct),
            "embedding": vectors.get(q.fingerprint),
            "evidence": evidence, "snapshot_id": snap["snapshot_id"]})
    # the statements this run evaluated: their rows it did not choose again are superseded
    written = store.write_optimization_log(store_conn, rows, target=target,
                                           evaluated=[q.fingerprint for q in queries.values()])
    counts = store.log_counts(store_conn, target)
    confidences = [r["confidence"] for r in rows if r["confidence"] is not None]
    gains = [r["performance_gain"] for r in rows if r["performance_gain"] is not None]
    realized = store.realized_gain(store_conn, target)
    return {"snapshot_id": snap["snapshot_id"], "recommendations": len(rows),
            "indexes_recommended": len(selection.chosen), "declined": len(selection.declined), **written,
            "next_in_line": len(selection.next_in_line), "unmeasured_statements": len(unmeasured(benches)),
            "mean_confidence": round(statistics.fmean(confidences), 3) if confidences else 0.0,
            "mean_gain_pct": round(statistics.fmean(gains), 1) if gains else 0.0,
            # stable keys the UI plots week over week: predicted (measured on the sandbox) and realized
            # (seen on the target after the index was applied) gains
            "predicted_gain_pct": round(statistics.fmean(gains), 1) if gains else 0.0,
            "realized_gain_pct": round(float(realized["realized_gain_pct"]), 1)
            if realized["realized_gain_pct"] is not None else 0.0,
            "realized_optimizations": realized["realized"],
            "index_bytes": sum(c.index_bytes for c in selection.chosen),
            "log_rows": counts["rows"], "current_recommendations": counts["current_rows"],
            "log_rows_with_embedding": counts["with_embedding"]}


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
