"""The weekly audit job and its schedule (Sunday 02:00, the seeds' cadence)."""

from __future__ import annotations

import dagster as dg

from .assets import GROUP

WEEKLY_CRON = "0 2 * * 0"

weekly_audit_job = dg.define_asset_job(
    "weekly_audit_job", selection=dg.AssetSelection.groups(GROUP),
    description="Snapshot slow statements, embed, recommend, benchmark, log.",
)


def weekly_audit_schedule(timezone: str = "UTC") -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_audit_schedule", job=weekly_audit_job, cron_schedule=WEEKLY_CRON,
        execution_timezone=timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
    )
