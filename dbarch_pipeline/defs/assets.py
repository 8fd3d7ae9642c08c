"""The weekly audit as software-defined assets, one group:
slow_query_snapshot -> query_embeddings -> index_recommendations -> benchmarked_gains -> optimization_log.
"""


import dagster as dg

from .. import audit, db
from ..resources.audit_settings import AuditSettingsResource
from ..resources.embedder import EmbedderResource
from ..resources.postgres import SandboxDatabase, StoreDatabase, TargetDatabase
from ..schema_guard import schema_digest

GROUP = "weekly_audit"


def _numeric(summary: dict) -> dict:
    """Numbers become plottable metadata; details go in as JSON."""
    meta: dict = {}
    for key, value in summary.items():
        if isinstance(value, bool):
            meta[key] = value
        elif isinstance(value, (int, float)):
            meta[key] = dg.MetadataValue.float(float(value)) if isinstance(value, float) else value
        elif isinstance(value, (list, dict)):
            if value:
                meta[key] = dg.MetadataValue.json(value)
        elif value is not None:
            meta[key] = str(value)
    return meta


@dg.asset(group_name=GROUP, kinds={"postgres"})
def slow_query_snapshot(context: dg.AssetExecutionContext, target: TargetDatabase, store: StoreDatabase,
                        audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """Top statements of the target from pg_stat_statements by total time, above the thresholds,
    stored in the store with their counters."""
    settings = audit_settings.settings()
    conninfo = target.conninfo()
    with target.connect() as t, store.connect() as s:
        summary = audit.take_snapshot(t, s, target=target.target_name(), database=db.database_name(conninfo),
                                      thresholds=settings.thresholds, run_id=context.run.run_id)
    if summary["slow_queries"] == 0:
        context.log.info("no statement crossed the thresholds: nothing to optimize this time")
    return dg.MaterializeResult(metadata={
        **_numeric(summary), "dagster/row_count": summary["slow_queries"],
        "target": db.redact(conninfo),
    })


@dg.asset(group_name=GROUP, kinds={"pgvector"}, deps=[slow_query_snapshot])
def query_embeddings(store: StoreDatabase, embedder: EmbedderResource, target: TargetDatabase
                     ) -> dg.MaterializeResult:
    """384-d all-MiniLM-L6-v2 embeddings of each slow statement's normalized text, cached by
    fingerprint: a known fingerprint is never embedded again."""
    with store.connect() as s:
        summary = audit.embed_queries(s, embedder.get(), target=target.target_name())
    return dg.MaterializeResult(metadata=_numeric(summary))


@dg.asset(group_name=GROUP, kinds={"sqlglot"}, deps=[query_embeddings])
def index_recommendations(target: TargetDatabase, store: StoreDatabase,
                          audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """Candidate indexes per slow statement from the deterministic advisor (sqlglot analysis,
    existing indexes, column statistics), with the similar past optimizations from the log."""
    with target.connect() as t, store.connect() as s:
        summary = audit.recommend_indexes(t, s, target=target.target_name(), settings=audit_settings.settings())
    return dg.MaterializeResult(metadata={**_numeric(summary), "dagster/row_count": summary["candidates"]})


@dg.asset(group_name=GROUP, kinds={"postgres"}, deps=[index_recommendations],
          check_specs=[dg.AssetCheckSpec("target_schema_unchanged", asset="benchmarked_gains", blocking=True,
                                         description="The sandbox's tables and indexes are identical "
                                                     "before and after the experiments.")])
def benchmarked_gains(context: dg.AssetExecutionContext, sandbox: SandboxDatabase, store: StoreDatabase,
                      target: TargetDatabase, audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """Every candidate measured on the sandbox inside a rolled-back transaction: planner cost
    before/after (generic plan) and EXPLAIN ANALYZE time with sampled parameter values."""
    settings = audit_settings.settings(statement_timeout_ms=sandbox.statement_timeout_ms,
                                       lock_timeout_ms=sandbox.lock_timeout_ms)
    with sandbox.connect() as sb, store.connect() as s:
        digest_before = schema_digest(sb)
        summary = audit.benchmark_candidates(sb, s, target=target.target_name(), settings=settings,
                                             progress=context.log.info)
        digest_after = schema_digest(sb)
    unchanged = digest_before == digest_after
    return dg.MaterializeResult(
        metadata={**_numeric(summary), "schema_digest": digest_after},
        check_results=[dg.AssetCheckResult(
            check_name="target_schema_unchanged", passed=unchanged,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"digest_before": digest_before, "digest_after": digest_after})],
    )


@dg.asset(group_name=GROUP, kinds={"postgres", "pgvector"}, deps=[benchmarked_gains],
          check_specs=[dg.AssetCheckSpec("recommendations_logged_with_embeddings", asset="optimization_log",
                                         blocking=True)])
def optimization_log(store: StoreDatabase, target: TargetDatabase,
                     audit_settings: AuditSettingsResource) -> dg.MaterializeResult:
    """The OptimizationLog: the best measured index per statement (gain above the bar), upserted in
    one transaction with its embedding, evidence and confidence."""
    with store.connect() as s:
        summary = audit.write_log(s, target=target.target_name(), settings=audit_settings.settings())
    complete = summary["log_rows"] == summary["log_rows_with_embedding"]
    return dg.MaterializeResult(
        metadata={**_numeric(summary), "dagster/row_count": summary["log_rows"]},
        check_results=[dg.AssetCheckResult(
            check_name="recommendations_logged_with_embeddings", passed=complete,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"log_rows": summary["log_rows"], "with_embedding": summary["log_rows_with_embedding"]})],
    )


AUDIT_ASSETS = [slow_query_snapshot, query_embeddings, index_recommendations, benchmarked_gains, optimization_log]
