"""Partitions, defined once: audited databases (a dynamic dimension, so targets can be added without
a code change) and weeks (Sunday to Sunday, UTC). The audit assets are partitioned by both; the
hourly capture by database only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

TARGETS_NAME = "dbarch_targets"
WEEK_START = "2025-01-05"  # a Sunday; backfills can reach back to here, as far as captures exist

TARGETS = dg.DynamicPartitionsDefinition(name=TARGETS_NAME)
# end_offset=1 includes the week in progress, so a live audit and the spike sensor have a partition
WEEKS = dg.WeeklyPartitionsDefinition(start_date=WEEK_START, day_offset=0, end_offset=1, timezone="UTC")
AUDIT_PARTITIONS = dg.MultiPartitionsDefinition({"target": TARGETS, "week": WEEKS})


def week_of(moment: datetime) -> str:
    """The partition key of the week holding `moment` (weeks start on Sunday, UTC)."""
    moment = moment.astimezone(timezone.utc)
    sunday = moment.date() - timedelta(days=(moment.weekday() + 1) % 7)
    return sunday.isoformat()


def last_complete_week(moment: datetime) -> str:
    return (datetime.fromisoformat(week_of(moment)) - timedelta(days=7)).date().isoformat()


def window(week: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(week).replace(tzinfo=timezone.utc)
    return start, start + timedelta(days=7)


def audit_key(target: str, week: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"target": target, "week": week})


def split(partition_key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(target, week) of an audit partition key."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
    else:
        dims = AUDIT_PARTITIONS.get_partition_key_from_str(partition_key).keys_by_dimension
    return dims["target"], dims["week"]


def by_target() -> dg.PartitionMapping:
    """Each audit partition depends on its target's captures. The mapping class is Beta in Dagster
    1.13; it only shapes lineage (the audit reads captures from the store itself), so it is kept
    here, in one place, with its warning silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="target")
