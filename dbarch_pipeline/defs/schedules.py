"""Jobs and schedules: the weekly audit (Sunday 02:00, the seeds' cadence) of the week just ended,
for every target; the hourly capture of every target's counters."""

from __future__ import annotations

import dagster as dg

from .assets import GROUP, pgss_capture
from .partitions import AUDIT_PARTITIONS, TARGETS, TARGETS_NAME, WEEKS_NAME, audit_key, last_complete_week

WEEKLY_CRON = "0 2 * * 0"
HOURLY_CRON = "0 * * * *"

weekly_audit_job = dg.define_asset_job(
    "weekly_audit_job", selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(pgss_capture),
    partitions_def=AUDIT_PARTITIONS,
    description="Snapshot a week's slow statements from the captures, embed, recommend, benchmark, log.",
)

capture_job = dg.define_asset_job(
    "pgss_capture_job", selection=dg.AssetSelection.assets(pgss_capture), partitions_def=TARGETS,
    description="Store every target's cumulative pg_stat_statements counters.",
)


def weekly_audit_schedule(timezone: str = "UTC") -> dg.ScheduleDefinition:
    @dg.schedule(name="weekly_audit_schedule", job=weekly_audit_job, cron_schedule=WEEKLY_CRON,
                 execution_timezone=timezone, default_status=dg.DefaultScheduleStatus.RUNNING)
    def _weekly(context: dg.ScheduleEvaluationContext):
        """The week that just ended, for every registered target (one run each); nothing when no
        capture reached that week (its partition does not exist)."""
        week = last_complete_week(context.scheduled_execution_time)
        if not context.instance.has_dynamic_partition(WEEKS_NAME, week):
            return
        for target in context.instance.get_dynamic_partitions(TARGETS_NAME):
            key = audit_key(target, week)
            yield dg.RunRequest(run_key=f"weekly-{key}", partition_key=key)

    return _weekly


@dg.schedule(name="pgss_capture_schedule", job=capture_job, cron_schedule=HOURLY_CRON,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def capture_schedule(context: dg.ScheduleEvaluationContext):
    """Every registered target, every hour."""
    stamp = context.scheduled_execution_time.isoformat()
    for target in context.instance.get_dynamic_partitions(TARGETS_NAME):
        yield dg.RunRequest(run_key=f"capture-{target}-{stamp}", partition_key=target)
