"""The audit's five stages as plain functions; the Dagster assets are thin calls to these.

Each stage reads its input from the store (the latest snapshot of the target) and writes its output
there, replacing that snapshot's rows in one transaction, so any stage can be re-run alone.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import psycopg

from . import capture
from .advisor.analyze import QueryShape, UnparseableQuery, analyze
from .advisor.candidates import candidates_for, ddl_text
from .advisor.catalog import Catalog
from .bench.runner import BenchSettings, benchmark_statement
from .errors import DbarchError
from .memory import store
from .memory.embeddings import Embedder
from .memory.fingerprint import normalize
from .models import IndexCandidate, Thresholds

Progress = Callable[[str], None]

# Functions whose effects a rolled-back transaction cannot undo, or that wait on purpose:
# statements calling them are never executed by the benchmark.
UNSAFE_FUNCTIONS = {"pg_sleep", "pg_sleep_for", "pg_sleep_until", "nextval", "setval", "set_config",
                    "dblink", "dblink_exec", "pg_terminate_backend", "pg_cancel_backend",
                    "pg_reload_conf", "pg_notify", "lo_import", "lo_export", "pg_read_file",
                    "pg_read_binary_file", "pg_write_file", "pg_advisory_lock", "txid_current"}


@dataclass(frozen=True)
class AuditSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    bench: BenchSettings = field(default_factory=BenchSettings)
    min_table_rows: int = 10_000
    max_candidates_per_query: int = 6
    min_gain_pct: float = 10.0          # below this measured gain, no recommendation
    similar_limit: int = 5


class NoSnapshot(DbarchError):
    pass


def _latest(store_conn: psycopg.Connection, target: str) -> dict:
    snap = store.latest_snapshot(store_conn, target)
    if snap is None:
        raise NoSnapshot(f"no slow-query snapshot stored for target {target!r}",
                         "materialize slow_query_snapshot first (or run `dbarch audit`)")
    return snap


# -- 1. slow_query_snapshot -------------------------------------------------------------------------

def take_snapshot(target_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
                  database: str, thresholds: Thresholds, run_id: str | None = None) -> dict:
    queries, skipped = capture.fetch_slow_queries(target_conn, thresholds)
    reset = capture.stats_reset(target_conn)
    snapshot_id = store.create_snapshot(
        store_conn, target=target, database=database, captured_at=datetime.now(timezone.utc),
        stats_reset=reset, thresholds=thresholds, queries=queries, skipped=skipped, run_id=run_id)
    return {
        "snapshot_id": snapshot_id, "slow_queries": len(queries),
        "skipped_catalog_queries": skipped["catalog"],
        "total_exec_ms": round(sum(q.total_exec_ms for q in queries), 1),
        "stats_reset": reset.isoformat() if reset else None,
    }


# -- 2. query_embeddings ----------------------------------------------------------------------------

def embed_queries(store_conn: psycopg.Connection, embedder: Embedder, *, target: str) -> dict:
    """Embed the snapshot's statements whose fingerprint has never been embedded."""
    snap = _latest(store_conn, target)
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
                      settings: AuditSettings) -> dict:
    """Deterministic candidates per slow statement, with the similar past optimizations (RAG)."""
    snap = _latest(store_conn, target)
    queries = store.snapshot_queries(store_conn, snap["snapshot_id"])
    vectors = store.embeddings_for(store_conn, [q.fingerprint for q in queries])
    catalog = Catalog(target_conn)
    rows: list[dict] = []
    unparseable: list[dict] = []
    no_candidates = 0
    for q in queries:
        try:
            shape = analyze_with_catalog(q.query_text, catalog)
        except UnparseableQuery as exc:
            unparseable.append({"queryid": q.queryid, "reason": str(exc)})
            continue
        similar = []
        if q.fingerprint in vectors:
            similar = store.similar_optimizations(store_conn, vectors[q.fingerprint],
                                                  limit=settings.similar_limit,
                                                  exclude_fingerprint=q.fingerprint)
        cands, _skips = candidates_for(shape, catalog, min_table_rows=settings.min_table_rows,
                                       mean_rows=q.rows / q.calls if q.calls else None)
        cands = cands[: settings.max_candidates_per_query]
        if not cands:
            no_candidates += 1
        for cand in cands:
            rows.append({"queryid": q.queryid, "ddl": ddl_text(cand), "table_name": cand.qualified_table,
                         "columns": list(cand.columns), "reason": cand.reason, "similar": similar,
                         "spec": cand.to_spec()})
    store.replace_candidates(store_conn, snap["snapshot_id"], rows)
    return {"snapshot_id": snap["snapshot_id"], "queries": len(queries), "candidates": len(rows),
            "queries_without_candidates": no_candidates, "unparseable": len(unparseable),
            "unparseable_detail": unparseable}


# -- 4. benchmarked_gains ---------------------------------------------------------------------------

def benchmark_candidates(sandbox_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
                         settings: AuditSettings, progress: Progress | None = None) -> dict:
    """Measure every candidate on the sandbox; each experiment is rolled back."""
    snap = _latest(store_conn, target)
    queries = {q.queryid: q for q in store.snapshot_queries(store_conn, snap["snapshot_id"])}
    by_query: dict[int, list[dict]] = {}
    for cand in store.candidates(store_conn, snap["snapshot_id"]):
        by_query.setdefault(cand["queryid"], []).append(cand)
    catalog = Catalog(sandbox_conn)
    rows: list[dict] = []
    skipped: list[dict] = []
    for n, (queryid, cands) in enumerate(by_query.items(), 1):
        q = queries[queryid]
        shape = analyze_with_catalog(q.query_text, catalog)
        reason = unsafe_reason(q.query_text, shape)
        if reason:
            skipped.append({"queryid": queryid, "reason": reason})
            continue
        if progress:
            progress(f"benchmarking query {n}/{len(by_query)} ({len(cands)} candidates): "
                     f"{_one_line(q.query_text, 70)}")
        index_cands = [IndexCandidate.from_spec(c["spec"]) for c in cands]
        for result in benchmark_statement(sandbox_conn, q.query_text, shape, index_cands, catalog,
                                          settings.bench):
            rows.append({"queryid": queryid, **result})
    store.replace_benchmarks(store_conn, snap["snapshot_id"], rows)
    measured = [r for r in rows if r["status"] == "measured"]
    return {"snapshot_id": snap["snapshot_id"], "candidates_measured": len(measured),
            "candidates_failed": len(rows) - len(measured), "queries_skipped": len(skipped),
            "skipped_detail": skipped}


def analyze_with_catalog(query: str, catalog: Catalog) -> QueryShape:
    """Parse once to learn the tables, then again with their columns to attribute unqualified ones."""
    shape = analyze(query)
    if len(shape.tables) <= 1:
        return shape
    return analyze(query, catalog.columns_map(shape.tables, shape.schemas))


def recommend_statement(conn: psycopg.Connection, query: str, settings: AuditSettings = AuditSettings(),
                        *, mean_rows: float | None = None) -> dict | None:
    """The whole advisor for one statement on one connection: candidates, measurement, the best
    index if it clears the bar (None otherwise). Used by tests and the quality benchmarks."""
    catalog = Catalog(conn)
    shape = analyze_with_catalog(query, catalog)
    if unsafe_reason(query, shape):
        return None
    cands, _ = candidates_for(shape, catalog, min_table_rows=settings.min_table_rows, mean_rows=mean_rows)
    results = benchmark_statement(conn, query, shape, cands[: settings.max_candidates_per_query], catalog,
                                  settings.bench)
    return best_per_query([{**r, "queryid": 0} for r in results], settings.min_gain_pct).get(0)


def unsafe_reason(query: str, shape: QueryShape) -> str | None:
    """Why a statement must not be executed on the sandbox, or None."""
    if not shape.is_read_only:
        return f"{shape.kind} statements are costed for write overhead, never executed"
    from sqlglot import exp

    from .advisor.analyze import parse

    for func in parse(query).find_all(exp.Func):
        name = (func.sql_name() if not isinstance(func, exp.Anonymous) else func.name).lower()
        if name in UNSAFE_FUNCTIONS:
            return f"calls {name}(), which a rollback cannot undo"
    return None


# -- 5. optimization_log ---------------------------------------------------------------------------

def best_per_query(benchmarks: list[dict], min_gain_pct: float) -> dict[int, dict]:
    """For each statement, the measured candidate with the largest gain, if it clears the bar."""
    best: dict[int, dict] = {}
    for b in benchmarks:
        if b["status"] != "measured":
            continue
        gain = b["measured_gain_pct"] if b["measured_gain_pct"] is not None else b["estimated_gain_pct"]
        if gain is None or gain < min_gain_pct or not b["evidence"].get("index_used"):
            continue
        current = best.get(b["queryid"])
        if current is None or _rank(b) > _rank(current):
            best[b["queryid"]] = b
    return best


def _rank(b: dict) -> tuple[float, float, float, int]:
    gain = b["measured_gain_pct"] if b["measured_gain_pct"] is not None else b["estimated_gain_pct"]
    cost_after = b["cost_after"] if b["cost_after"] is not None else float("inf")
    # gains within the clock's noise (5-point buckets) tie; then the plan the planner clearly prefers
    # (costs within ~40% tie: an index that avoids a sort or the heap wins), then the higher
    # confidence, then the smaller index
    return (round(gain / 5), -round(math.log2(cost_after + 1) * 2), b["confidence"] or 0.0,
            -(b["evidence"].get("index_bytes") or 0))


def write_log(store_conn: psycopg.Connection, *, target: str, settings: AuditSettings) -> dict:
    snap = _latest(store_conn, target)
    queries = {q.queryid: q for q in store.snapshot_queries(store_conn, snap["snapshot_id"])}
    benches = store.benchmarks(store_conn, snap["snapshot_id"])
    best = best_per_query(benches, settings.min_gain_pct)
    vectors = store.embeddings_for(store_conn, [queries[qid].fingerprint for qid in best])
    similar = {c["queryid"]: c["similar"] for c in store.candidates(store_conn, snap["snapshot_id"])}
    rows = []
    for queryid, b in best.items():
        q = queries[queryid]
        evidence = dict(b["evidence"])
        evidence.update(calls=q.calls, total_exec_ms=q.total_exec_ms, mean_exec_ms=q.mean_exec_ms,
                        cost_before=b["cost_before"], cost_after=b["cost_after"],
                        ms_before=b["ms_before"], ms_after=b["ms_after"],
                        similar_optimizations=similar.get(queryid, []))
        rows.append({
            "target": target, "fingerprint": q.fingerprint, "queryid": queryid,
            "query_text": q.query_text,
            "recommendation": f"Create index {evidence['index']} ({evidence['reason']})",
            "kind": "index", "ddl": b["ddl"], "performance_gain": b["measured_gain_pct"],
            "estimated_gain": b["estimated_gain_pct"], "confidence": b["confidence"],
            "embedding": vectors.get(q.fingerprint), "evidence": evidence, "snapshot_id": snap["snapshot_id"],
        })
    written = store.write_optimization_log(store_conn, rows)
    counts = store.log_counts(store_conn, target)
    confidences = [r["confidence"] for r in rows if r["confidence"] is not None]
    gains = [r["performance_gain"] for r in rows if r["performance_gain"] is not None]
    return {"snapshot_id": snap["snapshot_id"], "recommendations": len(rows), **written,
            "mean_confidence": round(statistics.fmean(confidences), 3) if confidences else 0.0,
            "mean_gain_pct": round(statistics.fmean(gains), 1) if gains else 0.0,
            "log_rows": counts["rows"], "log_rows_with_embedding": counts["with_embedding"]}


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
