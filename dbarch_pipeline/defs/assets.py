"""The weekly audit as software-defined assets, one group, partitioned by target and week:
pgss_capture (hourly, per target) -> slow_query_snapshot -> query_embeddings -> index_recommendations
-> benchmarked_gains -> optimization_log. Checks that guard integrity block; alerts warn.
"""

import dagster as dg

from .. import audit, db, report
from ..memory import store as store_mod
from ..metrics import write_textfile_if_configured
from ..resources.audit_settings import AuditSettingsResource
from ..resources.embedder import EmbedderResource
from ..llm.gemini import GeminiResource
from ..resources.postgres import SandboxDatabase, StoreDatabase, TargetDatabase
from ..schema_guard import schema_digest
from . import alerts, glance
from .partitions import AUDIT_PARTITIONS, TARGETS, by_target, register_weeks, split, window

GROUP = "weekly_audit"


def _partition(context) -> tuple[str, str]:
    """(target, partition key as stored) of an audit run."""
    target, _week = split(context.partition_key)
    return target, str(context.partition_key)


@dg.asset(group_name=GROUP, kinds={"postgres"}, partitions_def=TARGETS)
def pgss_capture(context: dg.AssetExecutionContext, target: TargetDatabase, store: StoreDatabase
                 ) -> dg.MaterializeResult:
    """The target's cumulative pg_stat_statements counters (and table write counters), stored as one
    capture. Taken hourly; weekly audits and backfills are computed from these captures alone."""
    from .. import history

    from .. import targets

    name = context.partition_key
    with target.connect(name) as t, store.connect() as s:
        summary = history.capture(t, s, target=name)
        first = targets.first_capture(s, name)
    # the weeks from this target's first capture to now become audit partitions
    added = register_weeks(context.instance, first) if first else []
    if added:
        context.log.info(f"week partitions added: {', '.join(added)}")
    return dg.MaterializeResult(metadata={
        **glance.plots(name, {"statements captured": summary["statements"]}), **glance.details(summary),
        "dagster/row_count": summary["statements"]})


@dg.asset(group_name=GROUP, kinds={"postgres"}, partitions_def=AUDIT_PARTITIONS,
          deps=[dg.AssetDep(pgss_capture, partition_mapping=by_target())],
          check_specs=[
              dg.AssetCheckSpec("pg_stat_statements_healthy", asset="slow_query_snapshot", blocking=True,
                                description="pg_stat_statements was readable, and no reset inside the week "
                                            "lost activity that the captures could not account for."),
              dg.AssetCheckSpec("week_over_week_regressions", asset="slow_query_snapshot",
                                description="Statements whose mean time rose by 50% or more since last week."),
              dg.AssetCheckSpec("pg_stat_statements_capacity", asset="slow_query_snapshot",
                                description="pg_stat_statements near pg_stat_statements.max, or evicting."),
          ])
def slow_query_snapshot(context: dg.AssetExecutionContext, target: TargetDatabase, store: StoreDatabase,
                        audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """The week's top statements by total time, above the thresholds: the difference between the
    week's captures (resets handled), stored in the store with their counters. For the week in
    progress a capture is taken first; a past week is computed from stored captures alone."""
    name, key = _partition(context)
    _, week = split(context.partition_key)
    settings = audit_settings.settings()
    bounds = window(week)
    with store.connect() as s:
        try:
            with target.connect(name) as t:
                conninfo = target.conninfo_for(name)
                summary = audit.take_snapshot(t, s, target=name, database=db.database_name(conninfo),
                                              thresholds=settings.thresholds, window=bounds, partition_key=key,
                                              run_id=context.run.run_id, observed=settings.observed)
        except db.UnreachableDatabase as exc:
            # a backfill needs only the stored captures; a live week needs the target
            if bounds[1] > audit.utcnow():
                raise
            context.log.warning(f"target unreachable ({exc.problem}); using stored captures only")
            summary = audit.take_snapshot(None, s, target=name, database=name, thresholds=settings.thresholds,
                                          window=bounds, partition_key=key, run_id=context.run.run_id,
                                          observed=settings.observed)
        snap = store_mod.latest_snapshot(s, name, key)
        checks = alerts.snapshot_checks(s, snap)
        alerts.notify_warnings(s, checks, target=name, week=week, asset="slow_query_snapshot",
                               run_id=context.run.run_id, log=context.log)
        queries = store_mod.snapshot_queries(s, snap["snapshot_id"])
    for note in summary["notes"]:
        context.log.info(note)
    rows = report.slow_statement_rows({"queries": [
        {"query": q.query_text, "calls": q.calls, "total_exec_ms": q.total_exec_ms, "mean_exec_ms": q.mean_exec_ms,
         "rows": q.rows} for q in queries]})
    return dg.MaterializeResult(
        metadata={"slow_statements": glance.table(rows, glance.SLOW_STATEMENTS[:-1]),
                  **glance.plots(name, {"slow statements": len(queries),
                                        "slow statements total time ms": round(sum(q.total_exec_ms for q in queries), 1)
                                        if queries else None}),
                  **glance.details(summary), "dagster/row_count": summary["slow_queries"]},
        check_results=checks)


@dg.asset(group_name=GROUP, kinds={"pgvector"}, deps=[slow_query_snapshot], partitions_def=AUDIT_PARTITIONS)
def query_embeddings(context: dg.AssetExecutionContext, store: StoreDatabase, embedder: EmbedderResource
                     ) -> dg.MaterializeResult:
    """384-d all-MiniLM-L6-v2 embeddings of each slow statement's normalized text, cached by
    fingerprint: a known fingerprint is never embedded again."""
    name, key = _partition(context)
    with store.connect() as s:
        summary = audit.embed_queries(s, embedder.get(), target=name, partition_key=key)
    return dg.MaterializeResult(metadata=glance.details(summary))


@dg.asset(group_name=GROUP, kinds={"sqlglot"}, deps=[query_embeddings], partitions_def=AUDIT_PARTITIONS)
def index_recommendations(context: dg.AssetExecutionContext, target: TargetDatabase, store: StoreDatabase,
                          audit_settings: AuditSettingsResource, gemini: GeminiResource) -> dg.MaterializeResult:
    """Candidate indexes per slow statement from the deterministic advisor (sqlglot analysis,
    existing indexes, column statistics), with the similar past optimizations from the log, and the
    existing indexes worth dropping. With GEMINI_API_KEY, Gemini's ideas join them once validated."""
    name, key = _partition(context)
    client = gemini.client(say=context.log.warning)
    with target.connect(name) as t, store.connect() as s:
        summary = audit.recommend_indexes(t, s, target=name, settings=audit_settings.settings(), partition_key=key,
                                          gemini_client=client)
    return dg.MaterializeResult(metadata={**glance.plots(name, {"candidate indexes": summary["candidates"]}),
                                          **glance.details(summary), "dagster/row_count": summary["candidates"]})


@dg.asset(group_name=GROUP, kinds={"postgres"}, deps=[index_recommendations], partitions_def=AUDIT_PARTITIONS,
          check_specs=[dg.AssetCheckSpec("target_schema_unchanged", asset="benchmarked_gains", blocking=True,
                                         description="The sandbox's tables and indexes are identical "
                                                     "before and after the experiments.")])
def benchmarked_gains(context: dg.AssetExecutionContext, sandbox: SandboxDatabase, store: StoreDatabase,
                      target: TargetDatabase, audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """Every candidate measured on the sandbox inside a rolled-back transaction: planner cost
    before/after and EXPLAIN ANALYZE time with sampled parameter values, against every statement on
    its table; HypoPG screens candidates first where the sandbox has it."""
    name, key = _partition(context)
    settings = audit_settings.settings(statement_timeout_ms=sandbox.statement_timeout_ms,
                                       lock_timeout_ms=sandbox.lock_timeout_ms)
    default = name == target.target_name()
    with sandbox.connect(target.conninfo_for(name), default_target=default) as sb, store.connect() as s:
        digest_before = schema_digest(sb)
        summary = audit.benchmark_candidates(sb, s, target=name, settings=settings, progress=context.log.info,
                                             partition_key=key)
        digest_after = schema_digest(sb)
        snap = store_mod.latest_snapshot(s, name, key)
        texts = {q.queryid: q.query_text for q in store_mod.snapshot_queries(s, snap["snapshot_id"])}
        rows = report.benchmark_rows(store_mod.benchmarks(s, snap["snapshot_id"]), texts)
    named = report.regressions(rows)
    return dg.MaterializeResult(
        metadata={"benchmarks": glance.table(rows, glance.BENCHMARKS),
                  "regressions": dg.MetadataValue.md("\n".join(f"- {r}" for r in named) if named else "none"),
                  **glance.plots(name, {"candidates measured": sum(1 for r in rows if r["status"] == "measured"),
                                        "regressions measured": len(named)}),
                  **glance.details(summary), "schema_digest": digest_after},
        check_results=[dg.AssetCheckResult(
            check_name="target_schema_unchanged", passed=digest_before == digest_after,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"digest_before": digest_before, "digest_after": digest_after})],
    )


@dg.asset(group_name=GROUP, kinds={"postgres", "pgvector"}, deps=[benchmarked_gains],
          partitions_def=AUDIT_PARTITIONS,
          check_specs=[
              dg.AssetCheckSpec("recommendations_logged_with_embeddings", asset="optimization_log", blocking=True),
              dg.AssetCheckSpec("low_confidence_recommendations", asset="optimization_log",
                                description=f"Recommendations with confidence below {alerts.LOW_CONFIDENCE} "
                                            "(the seeds' alert threshold)."),
          ])
def optimization_log(context: dg.AssetExecutionContext, store: StoreDatabase,
                     audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """The OptimizationLog: the indexes chosen for the whole workload (gain above the bar, upkeep
    weighed), one row per statement they serve, upserted in one transaction with embedding, evidence
    and confidence; with a markdown report of the week."""
    name, key = _partition(context)
    settings = audit_settings.settings()
    with store.connect() as s:
        summary = audit.write_log(s, target=name, settings=settings, partition_key=key)
        checks = alerts.log_checks(s, name, key, summary)
        alerts.notify_warnings(s, checks, target=name, week=split(context.partition_key)[1], asset="optimization_log",
                               run_id=context.run.run_id, log=context.log)
        week = alerts.week_report(s, name, key, settings, run_id=context.run.run_id)
        textfile = write_textfile_if_configured(s)   # Prometheus textfile collector, when asked for
    extra = {"metrics_textfile": str(textfile)} if textfile else {}
    has_recs = summary["recommendations"] > 0
    return dg.MaterializeResult(
        # the report first: the UI shows metadata in this order, so the week reads at the top
        metadata={"report": dg.MetadataValue.md(week["markdown"]),
                  "indexes": glance.table(week["indexes"], glance.INDEXES),
                  **glance.plots(name, {
                      "recommendations": summary["recommendations"],
                      "indexes chosen": summary["indexes_recommended"],
                      "index size MB": round(summary["index_bytes"] / 1_048_576, 2) if summary["indexes_recommended"]
                      else None,
                      "predicted gain %": summary["predicted_gain_pct"] if has_recs else None,
                      "mean confidence": summary["mean_confidence"] if has_recs else None,
                      "realized gain %": summary["realized_gain_pct"] if summary["realized_optimizations"]
                      else None}),
                  **glance.details(summary), "dagster/row_count": summary["current_recommendations"], **extra},
        check_results=checks)


AUDIT_ASSETS = [pgss_capture, slow_query_snapshot, query_embeddings, index_recommendations, benchmarked_gains,
                optimization_log]
