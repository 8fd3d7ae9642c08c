"""Partitions, defined once: audited databases (a dynamic dimension, so targets can be added without
a code change) and weeks (Sunday to Sunday, UTC). The audit assets are partitioned by both; the
hourly capture by database only.

Weeks are a dynamic dimension too, starting at the first capture: a week is added when a capture
exists in it or after it (each capture adds the weeks from the target's first capture to its own),
so a backfill offers weeks that have data rather than every week since a fixed date. Dagster crosses
the two dimensions, so with several targets the grid also shows a later target's weeks before its
first capture; `dbarch targets weeks NAME --keys` lists exactly one target's weeks for a backfill."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

TARGETS_NAME = "dbarch_targets"
WEEKS_NAME = "dbarch_weeks"

TARGETS = dg.DynamicPartitionsDefinition(name=TARGETS_NAME)
WEEKS = dg.DynamicPartitionsDefinition(name=WEEKS_NAME)
AUDIT_PARTITIONS = dg.MultiPartitionsDefinition({"target": TARGETS, "week": WEEKS})


def week_of(moment: datetime) -> str:
    """The partition key of the week holding `moment` (weeks start on Sunday, UTC)."""
    moment = moment.astimezone(timezone.utc)
    sunday = moment.date() - timedelta(days=(moment.weekday() + 1) % 7)
    return sunday.isoformat()


def last_complete_week(moment: datetime) -> str:
    return (datetime.fromisoformat(week_of(moment)) - timedelta(days=7)).date().isoformat()


def weeks_since(first: datetime, now: datetime | None = None) -> list[str]:
    """The week keys from the week holding `first` to the week holding `now`, in order."""
    start = datetime.fromisoformat(week_of(first))
    end = datetime.fromisoformat(week_of(now or datetime.now(timezone.utc)))
    return [(start + timedelta(days=7 * i)).date().isoformat() for i in range((end - start).days // 7 + 1)]


def missing_weeks(instance: dg.DagsterInstance, first: datetime, now: datetime | None = None) -> list[str]:
    known = set(instance.get_dynamic_partitions(WEEKS_NAME))
    return [w for w in weeks_since(first, now) if w not in known]


def register_weeks(instance: dg.DagsterInstance, first: datetime, now: datetime | None = None) -> list[str]:
    """Add the weeks from `first` (a target's first capture) to `now` that are not partitions yet."""
    new = missing_weeks(instance, first, now)
    if new:
        instance.add_dynamic_partitions(WEEKS_NAME, new)
    return new


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
