"""Asset-check results and the week's markdown report: what the audit assets tell the UI.

Checks that guard integrity are ERROR (and blocking where declared); alerts are WARN.
"""

import os

import dagster as dg
import psycopg

from .. import report, watch
from ..audit import AuditSettings
from ..db import named
from ..memory import store

LOW_CONFIDENCE = 0.6        # the seeds' alert threshold
REGRESSION_FACTOR = 1.5     # a statement 50% slower than last week
CAPACITY_SHARE = 0.9        # pg_stat_statements 90% full
LOST_ACTIVITY_SECONDS = 2 * 3600   # a reset more than two capture intervals after the last capture


def _where(snap_or_target, week: str | None = None) -> str:
    """'[target, week of W]': every check's description starts with what it looked at."""
    if isinstance(snap_or_target, dict):
        target = snap_or_target.get("target")
        week = (snap_or_target.get("partition_key") or "").split("|")[-1] or (
            snap_or_target["window_start"].date().isoformat() if snap_or_target.get("window_start") else "latest")
    else:
        target = snap_or_target
    return f"[{target}, week of {week}]"


def snapshot_checks(conn: psycopg.Connection, snap: dict) -> list[dg.AssetCheckResult]:
    where = _where(snap)
    hist = snap.get("history") or {}
    # a reset (of everything, of the database, or of a statement) long after the last capture: what
    # ran between that capture and the reset was never seen
    lost = [r for r in hist.get("resets", []) if (r.get("uncaptured_seconds") or 0) > LOST_ACTIVITY_SECONDS]
    healthy = dg.AssetCheckResult(
        check_name="pg_stat_statements_healthy", passed=not lost, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{where} a reset lost activity that no capture saw: " + "; ".join(
            f"{r['previous_capture_at']} to {r['at']}" for r in lost)) if lost else f"{where} no activity lost",
        metadata={"resets": dg.MetadataValue.json(hist.get("resets", [])), "captures": hist.get("captures", 0),
                  "notes": dg.MetadataValue.json(hist.get("notes", []))})

    regressions = week_over_week(conn, snap)
    regression = dg.AssetCheckResult(
        check_name="week_over_week_regressions", passed=not regressions, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{where} " + "; ".join(
            f"`{report.clip(r['query'], 100)}` is {r['factor']:.1f}x slower than the week of {(r['previous_week'] or '?').split('|')[-1]} "
            f"({r['mean_ms_before']:.2f} -> {r['mean_ms_now']:.2f} ms)" for r in regressions[:5])) if regressions
        else f"{where} no statement slower than last week",
        metadata={"target": snap.get("target") or "", "regressions": len(regressions),
                  "statements": dg.MetadataValue.json(regressions)})

    entries, max_entries = hist.get("entries") or 0, hist.get("max_entries") or 0
    evicted = hist.get("deallocations") or 0
    full = bool(max_entries) and entries >= CAPACITY_SHARE * max_entries
    capacity = dg.AssetCheckResult(
        check_name="pg_stat_statements_capacity", passed=not (full or evicted),
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{where} {entries}/{max_entries} entries, {evicted} evicted this week: raise "
                     "pg_stat_statements.max" if full or evicted else f"{where} {entries}/{max_entries} entries"),
        metadata={"entries": entries, "max_entries": max_entries, "evicted": evicted})
    return [healthy, regression, capacity]


def week_over_week(conn: psycopg.Connection, snap: dict) -> list[dict]:
    """Statements whose mean time rose by REGRESSION_FACTOR or more since the previous week."""
    if snap.get("window_start") is None:
        return []
    prev = store.previous_snapshot(conn, snap["target"], snap["window_start"])
    if prev is None:
        return []
    before = {q.fingerprint: q for q in store.snapshot_queries(conn, prev["snapshot_id"])}
    out = []
    for q in store.snapshot_queries(conn, snap["snapshot_id"]):
        old = before.get(q.fingerprint)
        if old and old.mean_exec_ms > 0 and q.mean_exec_ms >= REGRESSION_FACTOR * old.mean_exec_ms:
            out.append({"query": " ".join(q.query_text.split()), "fingerprint": q.fingerprint,
                        "mean_ms_before": old.mean_exec_ms, "mean_ms_now": q.mean_exec_ms,
                        "factor": q.mean_exec_ms / old.mean_exec_ms, "previous_week": prev["partition_key"]})
    return sorted(out, key=lambda r: -r["factor"])


def log_checks(conn: psycopg.Connection, target: str, partition_key: str, summary: dict
               ) -> list[dg.AssetCheckResult]:
    rows = [r for r in store.list_optimizations(conn, target=target, limit=10_000)
            if r.get("snapshot_id") == summary["snapshot_id"]]
    where = _where(target, partition_key.split("|")[-1])
    missing = summary["log_rows"] - summary["log_rows_with_embedding"]
    logged = dg.AssetCheckResult(
        check_name="recommendations_logged_with_embeddings",
        passed=missing == 0 and len(rows) >= summary["recommendations"], severity=dg.AssetCheckSeverity.ERROR,
        description=f"{where} {len(rows)} recommendation(s) in the log, {missing} row(s) without embedding",
        metadata={"written": summary["recommendations"], "in_log": len(rows), "without_embedding": missing})
    low = [r for r in rows if r["confidence"] is not None and r["confidence"] < LOW_CONFIDENCE]
    confidence = dg.AssetCheckResult(
        check_name="low_confidence_recommendations", passed=not low, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{where} " + "; ".join(f"`{r['ddl']}` for `{report.clip(r['query_text'], 80)}` "
                                             f"({r['confidence']:.2f})" for r in low[:5])) if low
        else f"{where} every recommendation at {LOW_CONFIDENCE} or more",
        metadata={"low_confidence": len(low),
                  "recommendations": dg.MetadataValue.json([{"ddl": r["ddl"], "confidence": r["confidence"],
                                                             "statement": r["query_text"]} for r in low[:20]])})
    return [logged, confidence]


def notify_warnings(conn: psycopg.Connection, checks: list[dg.AssetCheckResult], *, target: str, week: str,
                    asset: str, run_id: str | None, log=None) -> list[dict]:
    """Post every failed WARN check to $DBARCH_ALERT_WEBHOOK_URL (read now), once per target, week
    and check: the store remembers what was sent; a delivery that failed is tried again next run.
    Returns the alerts delivered."""
    url = os.environ.get(watch.ALERT_WEBHOOK_ENV, "").strip()
    if not url:
        return []
    sent = []
    for check in checks:
        if check.passed or check.severity != dg.AssetCheckSeverity.WARN:
            continue
        key = {"target": target, "week": week, "check_name": check.check_name}
        with conn.transaction():
            claimed = conn.execute(named("claim_check_alert"), {**key, "run_id": run_id}).fetchone()
        if claimed is None:
            continue   # already sent for this target and week
        meta = {k: v.value for k, v in (check.metadata or {}).items()}
        alert = {"event": "dagster_check_warning", "check": check.check_name, "asset": asset, "target": target,
                 "week": week, "description": check.description, "run_id": run_id, "run_url": run_url(run_id),
                 "statements": meta.get("statements") or meta.get("recommendations") or []}
        problem = watch.post_json(url, alert)
        if problem:
            with conn.transaction():
                conn.execute(named("release_check_alert"), key)
            if log is not None:
                log.warning(f"check alert not delivered ({problem}); the next run tries again")
            continue
        sent.append(alert)
    return sent


def run_url(run_id: str | None) -> str | None:
    """A link to the run in the Dagster UI ($DBARCH_DAGSTER_URL, default the local `dbarch ui`)."""
    if not run_id:
        return None
    base = os.environ.get("DBARCH_DAGSTER_URL", "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/runs/{run_id}"


def week_report(conn: psycopg.Connection, target: str, partition_key: str, settings: AuditSettings,
                run_id: str | None = None) -> dict:
    """The week's report (markdown, the indexes table, the JSON result), stored with the snapshot so
    `dbarch report` prints it again without re-auditing."""
    data = report.audit_result(conn, target=target, settings=settings, partition_key=partition_key)
    sid = data.get("snapshot_id")
    benches = store.benchmarks(conn, sid) if sid else []
    texts = {q["queryid"]: q["query"] for q in data["queries"]}
    bench_rows = report.benchmark_rows(benches, texts)
    log_rows = [r for r in store.list_optimizations(conn, target=target, limit=10_000)]
    indexes = report.index_rows(data, benches, log_rows)
    markdown = report.week_markdown(data, benchmarks=bench_rows, indexes=indexes, run_url=run_url(run_id))
    data = {**data, "indexes_table": indexes, "benchmarks_table": bench_rows, "run_id": run_id}
    if sid:
        store.save_report(conn, sid, markdown, data)
    return {"markdown": markdown, "indexes": indexes, "benchmarks": bench_rows, "data": data}
