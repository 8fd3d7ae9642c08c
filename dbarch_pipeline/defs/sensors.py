"""Sensors. The target registry turns the configured targets (DBARCH_TARGETS, or the default
target) into partitions of the `target` dimension, so schedules and the UI know every database."""

from __future__ import annotations

import dagster as dg

from ..resources.postgres import TargetDatabase
from .partitions import TARGETS_NAME


@dg.sensor(name="target_registry", minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds every configured target as a partition of the `target` dimension.")
def target_registry(context: dg.SensorEvaluationContext, target: TargetDatabase) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(TARGETS_NAME))
    new = [name for name in target.target_names() if name not in known]
    requests = [dg.AddDynamicPartitionsRequest(partitions_def_name=TARGETS_NAME, partition_keys=new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests)


SENSORS = [target_registry]
