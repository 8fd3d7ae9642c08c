"""Thresholds and benchmark settings of the audit, configurable in the launchpad or the CLI."""

from __future__ import annotations

import dagster as dg

from ..audit import AuditSettings
from ..bench import activity
from ..bench.observed import ObservedSettings
from ..bench.runner import BenchSettings
from ..models import Thresholds


class AuditSettingsResource(dg.ConfigurableResource):
    min_calls: int = 5
    min_mean_ms: float = 1.0
    top_n: int = 20
    runs: int = 5
    warmup: int = 1
    param_sets: int = 4
    min_table_rows: int = 10_000
    max_candidates_per_query: int = 6
    min_gain_pct: float = 10.0
    storage_budget_mb: float = 0.0
    max_indexes: int = 0    # 0: no count cap; cost-benefit decides
    # parameter values observed in the server log (DBARCH_OBSERVED_PARAMS=off also switches them off)
    observed_params: bool = True
    observed_keep: int = 50
    observed_days: int = 30
    log_files: list[str] = []
    log_dirs: list[str] = []
    show_observed_values: bool = False
    time_budget_s: float = 0.0
    # the activity_sampler sensor: each tick reads pg_stat_activity every interval for this long
    activity_sample_seconds: float = activity.DEFAULT_SECONDS
    activity_sample_interval_s: float = activity.DEFAULT_INTERVAL

    def settings(self, *, statement_timeout_ms: int = 30_000, lock_timeout_ms: int = 2_000) -> AuditSettings:
        observed = ObservedSettings.from_env(enabled=self.observed_params, keep_per_statement=self.observed_keep,
                                             retention_days=self.observed_days, log_files=tuple(self.log_files),
                                             log_dirs=tuple(self.log_dirs), show_values=self.show_observed_values)
        return AuditSettings(
            thresholds=Thresholds(min_calls=self.min_calls, min_mean_ms=self.min_mean_ms, top_n=self.top_n),
            bench=BenchSettings(runs=self.runs, warmup=self.warmup, param_sets=self.param_sets,
                                statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms,
                                show_observed_values=observed.show_values),
            min_table_rows=self.min_table_rows,
            max_candidates_per_query=self.max_candidates_per_query,
            min_gain_pct=self.min_gain_pct,
            storage_budget_mb=self.storage_budget_mb,
            max_indexes=self.max_indexes,
            observed=observed,
            time_budget_s=self.time_budget_s,
        )
