"""Alerts as asset checks (WARN): they flag, they do not block."""


import dagster as dg

from ..memory import store as store_mod
from ..resources.postgres import StoreDatabase, TargetDatabase
from .assets import optimization_log

LOW_CONFIDENCE = 0.6  # the seeds' alert threshold


@dg.asset_check(asset=optimization_log, description="Recommendations of the latest audit with confidence "
                                                      f"below {LOW_CONFIDENCE} (the seeds' alert threshold).")
def low_confidence_recommendations(store: StoreDatabase, target: TargetDatabase) -> dg.AssetCheckResult:
    with store.connect() as s:
        snap = store_mod.latest_snapshot(s, target.target_name())
        rows = [r for r in store_mod.list_optimizations(s, target=target.target_name(), limit=1000)]
    low = [r for r in rows if snap and r["confidence"] is not None and r["confidence"] < LOW_CONFIDENCE]
    return dg.AssetCheckResult(
        passed=not low, severity=dg.AssetCheckSeverity.WARN,
        metadata={"low_confidence": len(low),
                  "queries": dg.MetadataValue.json([{"ddl": r["ddl"], "confidence": r["confidence"]}
                                                    for r in low[:20]])},
    )


AUDIT_CHECKS = [low_confidence_recommendations]
