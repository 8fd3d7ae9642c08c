"""Audits started over HTTP: the weekly audit job (the same asset graph and job the schedule runs)
executed as a real run in the Dagster instance, in a worker thread of the API process.

The run id is chosen before the run starts, so POST answers at once; GET reads the run's status from
the instance (runs started by the schedule or the CLI can be looked up the same way) and, once it
succeeded, the partition's report from the store. One audit runs at a time per process (a
benchmark on a production database should not compete with another); later requests queue, and a
request for a partition already queued or running gets that run's id back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import dagster as dg

from ..defs.assets import AUDIT_ASSETS
from ..defs.partitions import audit_key, week_of
from ..defs.schedules import weekly_audit_job
from ..errors import DbarchError
from ..run import QUIET_LOGS, register_target

log = logging.getLogger("dbarch.api")

TARGET_TAG, WEEK_TAG, SOURCE_TAG = "dbarch/target", "dbarch/week", "dbarch/started_by"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class Pending:
    """A run accepted but not yet recorded in the instance (queued behind another, or starting)."""

    target: str
    week: str
    error: str | None = None
    accepted_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def resolve_week(day: str | None, now: datetime | None = None) -> str:
    """The partition key of the week holding `day` (YYYY-MM-DD, any day of it; default: the week in
    progress), within the partitions the job knows."""
    now = now or datetime.now(timezone.utc)
    if not day:
        return week_of(now)
    try:
        moment = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    except ValueError:
        raise DbarchError(f"week {day!r} is not a date", "give any day of the week as YYYY-MM-DD") from None
    week = week_of(moment)
    if week > week_of(now):
        raise DbarchError(f"week {week} has not started yet (the week in progress is {week_of(now)})",
                          "pick a week that has started")
    return week


class AuditRunner:
    def __init__(self, resources: dict, instance: dg.DagsterInstance, *, redact: Callable[[str], str] = str):
        self.resources = resources
        self.instance = instance
        self.redact = redact
        self._pending: dict[str, Pending] = {}
        self._by_partition: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbarch-audit")
        defs = dg.Definitions(assets=AUDIT_ASSETS, jobs=[weekly_audit_job], resources=resources)
        self.job = defs.resolve_job_def(weekly_audit_job.name)

    def targets(self) -> list[str]:
        return self.resources["target"].target_names()

    def start(self, target: str, week: str) -> tuple[str, bool]:
        """(run id, True when this request started it; False when the partition was already queued
        or running and that run's id is returned)."""
        if target not in self.targets():
            raise DbarchError(f"unknown target {target!r}", f"audit one of: {', '.join(self.targets())} "
                              "(more are added through DBARCH_TARGETS)")
        with self._lock:
            existing = self._by_partition.get((target, week))
            if existing and not self._finished(existing):
                return existing, False
            run_id = str(uuid.uuid4())   # as Dagster makes them; chosen here so POST can answer at once
            self._pending[run_id] = Pending(target, week)
            self._by_partition[(target, week)] = run_id
        self._executor.submit(self._execute, run_id, target, week)
        return run_id, True

    def _execute(self, run_id: str, target: str, week: str) -> None:
        try:
            register_target(self.instance, target, week)
            self.job.execute_in_process(
                instance=self.instance, partition_key=audit_key(target, week), run_id=run_id,
                run_config=QUIET_LOGS, raise_on_error=False,
                tags={TARGET_TAG: target, WEEK_TAG: week, SOURCE_TAG: "admin-api"})
        except Exception as exc:   # the run never got going: keep the reason for GET
            log.exception("audit run %s of %s week %s could not start", run_id, target, week)
            self._pending[run_id].error = self.redact(f"{type(exc).__name__}: {exc}")
            return
        self._pending.pop(run_id, None)

    def _finished(self, run_id: str) -> bool:
        pending = self._pending.get(run_id)
        if pending is not None:
            return pending.error is not None
        run = self.instance.get_run_by_id(run_id)
        return run is None or run.status in FINISHED

    def status(self, run_id: str) -> dict[str, Any] | None:
        """{run_id, status, target, week, ...}, or None for an id neither this process nor the instance
        knows."""
        run = self.instance.get_run_by_id(run_id)
        pending = self._pending.get(run_id)
        if run is None:
            if pending is None:
                return None
            status = "FAILURE" if pending.error else "QUEUED"
            return {"run_id": run_id, "status": status, "target": pending.target, "week": pending.week,
                    "error": pending.error}
        target = run.tags.get(TARGET_TAG) or run.tags.get("dagster/partition/target")
        week = run.tags.get(WEEK_TAG) or run.tags.get("dagster/partition/week")
        out: dict[str, Any] = {"run_id": run_id, "status": run.status.value, "target": target, "week": week,
                               "job": run.job_name, "error": None}
        if run.status == dg.DagsterRunStatus.FAILURE:
            out["error"] = self._failure(run_id)
        return out

    def _failure(self, run_id: str) -> str:
        """The failed steps' error messages (redacted), for the caller to act on."""
        messages = []
        for record in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            event = record.dagster_event
            error = getattr(event.event_specific_data, "error", None) if event else None
            step = event.step_key if event else "?"
            messages.append(f"{step}: {error.message.strip() if error else record.user_message}")
        return self.redact("; ".join(messages) or "the run failed; open it in the Dagster UI for its logs")

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)
