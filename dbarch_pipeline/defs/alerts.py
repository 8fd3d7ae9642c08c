"""Asset-check results and the week's markdown report: what the audit assets tell the UI.

Checks that guard integrity are ERROR (and blocking where declared); alerts are WARN.
"""

import dagster as dg
import psycopg

from .. import report
from ..audit import AuditSettings
from ..memory import store

LOW_CONFIDENCE = 0.6        # the seeds' alert threshold
REGRESSION_FACTOR = 1.5     # a statement 50% slower than last week
CAPACITY_SHARE = 0.9        # pg_stat_statements 90% full
LOST_ACTIVITY_SECONDS = 2 * 3600   # a reset more than two capture intervals after the last capture


def snapshot_checks(conn: psycopg.Connection, snap: dict) -> list[dg.AssetCheckResult]:
    hist = snap.get("history") or {}
    # a reset (of everything, of the database, or of a statement) long after the last capture: what
    # ran between that capture and the reset was never seen
    lost = [r for r in hist.get("resets", []) if (r.get("uncaptured_seconds") or 0) > LOST_ACTIVITY_SECONDS]
    healthy = dg.AssetCheckResult(
        check_name="pg_stat_statements_healthy", passed=not lost, severity=dg.AssetCheckSeverity.ERROR,
        description=("a reset lost activity that no capture saw: " + "; ".join(
            f"{r['previous_capture_at']} to {r['at']}" for r in lost)) if lost else None,
        metadata={"resets": dg.MetadataValue.json(hist.get("resets", [])), "captures": hist.get("captures", 0),
                  "notes": dg.MetadataValue.json(hist.get("notes", []))})

    regressions = week_over_week(conn, snap)
    regression = dg.AssetCheckResult(
        check_name="week_over_week_regressions", passed=not regressions, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{r['query'][:80]} is {r['factor']:.1f}x slower ({r['mean_ms_before']:.2f} -> "
                              f"{r['mean_ms_now']:.2f} ms)" for r in regressions[:5]) or None,
        metadata={"regressions": len(regressions), "statements": dg.MetadataValue.json(regressions)})

    entries, max_entries = hist.get("entries") or 0, hist.get("max_entries") or 0
    evicted = hist.get("deallocations") or 0
    full = bool(max_entries) and entries >= CAPACITY_SHARE * max_entries
    capacity = dg.AssetCheckResult(
        check_name="pg_stat_statements_capacity", passed=not (full or evicted),
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{entries}/{max_entries} entries, {evicted} evicted this week: raise "
                     "pg_stat_statements.max" if full or evicted else None),
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
    missing = summary["log_rows"] - summary["log_rows_with_embedding"]
    logged = dg.AssetCheckResult(
        check_name="recommendations_logged_with_embeddings",
        passed=missing == 0 and len(rows) >= summary["recommendations"], severity=dg.AssetCheckSeverity.ERROR,
        metadata={"written": summary["recommendations"], "in_log": len(rows), "without_embedding": missing})
    low = [r for r in rows if r["confidence"] is not None and r["confidence"] < LOW_CONFIDENCE]
    confidence = dg.AssetCheckResult(
        check_name="low_confidence_recommendations", passed=not low, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{r['ddl']} ({r['confidence']:.2f})" for r in low[:5]) or None,
        metadata={"low_confidence": len(low),
                  "recommendations": dg.MetadataValue.json([{"ddl": r["ddl"], "confidence": r["confidence"]}
                                                            for r in low[:20]])})
    return [logged, confidence]


def week_report(conn: psycopg.Connection, target: str, partition_key: str, settings: AuditSettings) -> str:
    """The week in markdown: top statements, recommendations with before/after times, declined ones."""
    data = report.audit_result(conn, target=target, settings=settings, partition_key=partition_key)
    lines = [f"## dbarch audit of `{target}`, week of {partition_key.split('|')[-1]}", ""]
    lines += [f"- {n}" for n in data.get("notes") or []]
    lines += ["", "| # | statement | calls | mean ms | recommendation | before ms | after ms | gain | confidence |",
              "|---|---|---|---|---|---|---|---|---|"]
    recs = {r["queryid"]: r for r in data["recommendations"]}
    for i, q in enumerate(data["queries"], 1):
        text = " ".join(q["query"].split()).replace("|", "\\|")[:90]
        r = recs.get(q["queryid"])
        if r:
            lines.append(f"| {i} | `{text}` | {q['calls']} | {q['mean_exec_ms']:.2f} | `{r['ddl']}` | "
                         f"{r['ms_before'] or 0:.3f} | {r['ms_after'] or 0:.3f} | {r['measured_gain_pct'] or 0:.1f}% | "
                         f"{r['confidence']:.2f} |")
        else:
            lines.append(f"| {i} | `{text}` | {q['calls']} | {q['mean_exec_ms']:.2f} | none: "
                         f"{q.get('why_none', '')} | | | | |")
    if data.get("declined"):
        lines += ["", "**Declined**", ""] + [f"- `{d['ddl']}`: {d['reason']}" for d in data["declined"]]
    if data.get("drop_recommendations"):
        lines += ["", "**Existing indexes you could drop**", ""] + [
            f"- `{d['ddl']}` ({d['drop_kind']}): {d['reason']}" for d in data["drop_recommendations"]]
    return "\n".join(lines)
