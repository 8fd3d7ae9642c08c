"""Sensors. The target registry turns the configured targets (DBARCH_TARGETS, or the default
target) into partitions of the `target` dimension, so schedules and the UI know every database.
Between audits: `slow_query_spike` audits a target's current week when a new statement crosses the
thresholds, `applied_optimizations` notices applied recommendations and records what they really
gained, `pull_request_reviews` reads reviews back (rejected, merged) and closes superseded pull
requests (prs/lifecycle.py), `run_failure_alert` logs failed runs and posts them to $DBARCH_ALERT_WEBHOOK_URL,
`activity_sampler` keeps the statement texts pg_stat_activity shows while they run (bench/activity.py).
The logic is in dbarch_pipeline/watch.py."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import dagster as dg
import psycopg

from .. import watch
from ..bench import activity
from ..errors import DbarchError
from ..resources.audit_settings import AuditSettingsResource
from ..resources.github import GitHubResource
from ..resources.postgres import StoreDatabase, TargetDatabase
from .partitions import TARGETS_NAME, WEEKS_NAME, audit_key, week_of
from .schedules import weekly_audit_job


@dg.sensor(name="target_registry", minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds every configured target as a partition of the `target` dimension.")
def target_registry(context: dg.SensorEvaluationContext, target: TargetDatabase) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(TARGETS_NAME))
    new = [name for name in target.target_names() if name not in known]
    requests = [dg.AddDynamicPartitionsRequest(partitions_def_name=TARGETS_NAME, partition_keys=new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(name="slow_query_spike", job=weekly_audit_job, minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Audits a target's current week as soon as a statement never seen before crosses "
                       "the audit thresholds in pg_stat_statements.")
def slow_query_spike(context: dg.SensorEvaluationContext, target: TargetDatabase, store: StoreDatabase,
                     audit_settings: AuditSettingsResource) -> dg.SensorResult:
    seen = watch.parse_cursor(context.cursor)
    thresholds = audit_settings.settings().thresholds
    week = week_of(datetime.now(timezone.utc))
    targets = context.instance.get_dynamic_partitions(TARGETS_NAME)
    requests = []
    for name in targets:
        try:
            with target.connect(name) as conn:
                current = watch.slow_fingerprints(conn, thresholds)
        except (DbarchError, psycopg.Error) as exc:
            problem = exc.problem if isinstance(exc, DbarchError) else str(exc).strip()
            context.log.warning(f"slow_query_spike: skipping target {name}: {problem}")
            continue
        # what this week's audit already judged (the demo, `dbarch audit`, a scheduled run) is not new:
        # the sensor never re-audits a week just audited, whatever its cursor says
        try:
            with store.connect() as s:
                seen = watch.remember(seen, name, watch.audited_fingerprints(s, name, str(audit_key(name, week))))
        except DbarchError as exc:
            context.log.warning(f"slow_query_spike: store unavailable ({exc.problem}); the cursor alone decides")
        spike = watch.find_spike(seen, name, week, current)
        if spike is not None:
            context.log.info(f"slow_query_spike: {len(spike.fingerprints)} new slow statement(s) on {name}")
            requests.append(dg.RunRequest(
                run_key=spike.run_key, partition_key=audit_key(name, week),
                tags={"dbarch/trigger": "slow_query_spike", "dbarch/new_statements": str(len(spike.fingerprints))}))
        seen = watch.remember(seen, name, current)
    cursor = watch.dump_cursor(seen, targets)
    if not requests:
        return dg.SensorResult(skip_reason=f"no new slow statement on {len(targets)} target(s)", cursor=cursor)
    # the week in progress becomes a partition before its run is requested
    weeks = [] if context.instance.has_dynamic_partition(WEEKS_NAME, week) else [
        dg.AddDynamicPartitionsRequest(partitions_def_name=WEEKS_NAME, partition_keys=[week])]
    return dg.SensorResult(run_requests=requests, cursor=cursor, dynamic_partitions_requests=weeks)


@dg.sensor(name="applied_optimizations", minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks recommendations applied when their index exists on the target or their pull "
                       "request is merged, then records the realized gain from the captures.")
def applied_optimizations(context: dg.SensorEvaluationContext, target: TargetDatabase,
                          store: StoreDatabase) -> dg.SkipReason:
    # no run to launch: the sensor updates the store, and its tick says what it did
    now = datetime.now(timezone.utc)
    try:
        configured = set(target.target_names())
    except DbarchError as exc:
        context.log.warning(f"applied_optimizations: no configured target: {exc.problem}")
        configured = set()
    with store.connect() as s:
        # the log may hold rows of targets no longer configured: those are not connected to
        found = watch.detect_applied(s, target.connect, now=now, targets=configured)
        gains = watch.realize_gains(s, now=now)
    for name, problem in found["unreachable"].items():
        context.log.warning(f"applied_optimizations: skipping target {name}: {problem}")
    if found["unconfigured"]:
        context.log.info(f"applied_optimizations: not configured, not checked: {', '.join(found['unconfigured'])}")
    for row in found["applied"]:
        context.log.info(f"applied_optimizations: [{row['target']}] applied ({row['how']}): {row['ddl']}")
    for row in gains:
        context.log.info(f"applied_optimizations: [{row['target']}] realized gain {row['realized_gain']:.1f}% "
                         f"({row['mean_ms_before']} ms -> {row['mean_ms_after']} ms, {row['calls_after']} calls "
                         f"after): {row['ddl']}")
    return dg.SkipReason(f"{found['proposed']} proposed checked, {len(found['applied'])} newly applied, "
                         f"{len(gains)} realized gain(s) recorded")


@dg.sensor(name="pull_request_reviews", minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Reads back the open pull requests: merged ones are recorded (then applied), ones closed "
                       "without merging make their recommendations rejected; pull requests only superseded "
                       "recommendations hold are closed with a comment naming what replaced them.")
def pull_request_reviews(context: dg.SensorEvaluationContext, store: StoreDatabase,
                         github: GitHubResource) -> dg.SkipReason:
    from ..prs import lifecycle

    try:
        publisher = github.publisher()
        with store.connect() as s:
            seen = lifecycle.review(s, publisher)
            withdrawn = lifecycle.close_superseded(s, publisher)
    except DbarchError as exc:   # a bad token, a rate limit: said on the tick, tried again next time
        context.log.warning(f"pull_request_reviews: {exc.problem}")
        return dg.SkipReason(f"pull requests not read: {exc.problem}")
    for r in seen["rejected"]:
        context.log.info(f"pull_request_reviews: [{r['target']}] {r['pr_url']} closed without merging"
                         f"{' by ' + r['closed_by'] if r['closed_by'] else ''}: rejected")
    for r in seen["merged"]:
        context.log.info(f"pull_request_reviews: [{r['target']}] {r['pr_url']} merged")
    for c in withdrawn["closed"]:
        context.log.info(f"pull_request_reviews: [{c['target']}] closed {c['url'] or c['branch']}: superseded")
    for k in withdrawn["kept"]:
        context.log.warning(f"pull_request_reviews: [{k['target']}] kept {k['branch']}: {k['reason']}")
    return dg.SkipReason(f"{seen['checked']} open pull request(s) read: {len(seen['merged'])} merged, "
                         f"{len(seen['rejected'])} rejected; {len(withdrawn['closed'])} superseded one(s) closed")


@dg.sensor(name="activity_sampler", minimum_interval_seconds=activity.DEFAULT_EVERY,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Samples each target's pg_stat_activity for a few seconds every tick and keeps the texts "
                       "of the statements running (their constants, which pg_stat_statements replaces by $n); "
                       "off with DBARCH_OBSERVED_PARAMS=off.")
def activity_sampler(context: dg.SensorEvaluationContext, target: TargetDatabase, store: StoreDatabase,
                     audit_settings: AuditSettingsResource) -> dg.SkipReason:
    settings = audit_settings.settings().observed
    if not settings.enabled:
        return dg.SkipReason("activity sampling is off (DBARCH_OBSERVED_PARAMS=off or observed_params: false)")
    names = context.instance.get_dynamic_partitions(TARGETS_NAME)
    done = activity.sample_targets(names, target.connect, store.connect, settings=settings,
                                   seconds=audit_settings.activity_sample_seconds,
                                   interval=audit_settings.activity_sample_interval_s)
    for name, result in done.items():
        if "problem" in result:
            context.log.warning(f"activity_sampler: skipping target {name}: {result['problem']}")
        for note in result["notes"]:
            context.log.warning(f"activity_sampler: [{name}] {note}")
    return dg.SkipReason("; ".join(f"{name}: {result.get('problem') or activity.summary_line(result)}"
                                   for name, result in done.items()) or "no target")


@dg.run_failure_sensor(name="run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Logs every failed run as one JSON line and posts it to "
                                   "$DBARCH_ALERT_WEBHOOK_URL when set.")
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    step_error = steps[0].event_specific_data.error if steps and steps[0].event_specific_data else None
    # the step's error wraps the user's exception: its innermost cause says what went wrong
    while step_error is not None and step_error.cause is not None:
        step_error = step_error.cause
    alert = watch.failure_alert(
        run_id=run.run_id, job=run.job_name, partition=run.tags.get("dagster/partition"),
        step=steps[0].step_key if steps else None,
        error=step_error.message.strip() if step_error else context.failure_event.message)
    context.log.error(json.dumps(alert))
    # read at evaluation time, so the webhook can be set or changed without reloading the code
    url = os.environ.get(watch.ALERT_WEBHOOK_ENV, "").strip()
    if url:
        problem = watch.post_json(url, alert)
        if problem:
            context.log.warning(f"run_failure_alert: {problem}")


SENSORS = [target_registry, slow_query_spike, applied_optimizations, pull_request_reviews, activity_sampler,
           run_failure_alert]
