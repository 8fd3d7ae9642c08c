"""Running the audit through the real Dagster asset graph, from the CLI or a script.

`dbarch demo` and `dbarch audit` materialize the same assets the schedule runs; the Dagster instance
is the project's own (DAGSTER_HOME under .dbarch/, storage on the embedded server through
dagster.yaml), so the runs appear in `dagster dev` afterwards.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from . import embedded
from .definitions import default_resources
from .defs.assets import AUDIT_ASSETS, pgss_capture
from .defs.partitions import TARGETS_NAME, WEEKS_NAME, audit_key, split, week_of
from .defs.pr_assets import PR_ASSETS
from .errors import DbarchError
from .resources.audit_settings import AuditSettingsResource
from .resources.postgres import SandboxDatabase, StoreDatabase, TargetDatabase
from .safety.faults import fail_orphaned_runs, run_tags
from .settings import PROJECT_ROOT, data_dir

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def dagster_home() -> Path:
    """A DAGSTER_HOME holding the project's dagster.yaml; storage goes to the embedded server's
    `dagster` database unless DAGSTER_PG_URL points elsewhere."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    # refreshed every time, so edits to the project's dagster.yaml take effect
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def configure_dagster_env() -> dict[str, str]:
    """Environment for Dagster processes: DAGSTER_HOME and the storage URL (embedded by default)."""
    env = {"DAGSTER_HOME": str(dagster_home())}
    if not os.environ.get("DAGSTER_PG_URL"):
        embedded.ensure_running()
        # dagster-postgres is written for psycopg2; SQLAlchemy 2.1 would pick psycopg 3 for a bare
        # postgresql:// URL, and dagster's NOTIFY statements fail there.
        env["DAGSTER_PG_URL"] = embedded.url("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    os.environ.update(env)
    return env


def persistent_instance() -> dg.DagsterInstance:
    configure_dagster_env()
    return dg.DagsterInstance.get()


def _by_reference(dsn: str | None, env_name: str) -> tuple[str, bool]:
    """A DSN for resource config. A password must never reach Dagster's instance (a resource's
    config is part of the job snapshot stored with every run): a DSN holding one is put in this
    process's environment variable `env_name` instead, which the resource reads when it runs.
    Returns (the value to configure, whether it went through the environment)."""
    from .targets import strip_password

    if not dsn:
        return "", False
    try:
        _stripped, had_password = strip_password(dsn)
    except DbarchError:
        return dsn, False          # not a DSN: connecting says so, with the fix
    if not had_password:
        return dsn, False
    os.environ[env_name] = dsn
    return "", True


def audit_resources(*, target_dsn: str | None = None, sandbox_dsn: str | None = None,
                    store_dsn: str | None = None, settings: dict | None = None,
                    target_name: str | None = None) -> dict:
    from .settings import SANDBOX_DSN_ENV, STORE_DSN_ENV, TARGET_DSN_ENV

    resources = default_resources()
    store_value, _ = _by_reference(store_dsn, STORE_DSN_ENV)
    if target_dsn:
        target_value, _ = _by_reference(target_dsn, TARGET_DSN_ENV)
        resources["target"] = TargetDatabase(dsn=target_value, name=target_name or "", registry_dsn=store_value)
        # experiments run on the target unless a sandbox is named
        if sandbox_dsn:
            resources["sandbox"] = SandboxDatabase(dsn=_by_reference(sandbox_dsn, SANDBOX_DSN_ENV)[0])
        else:
            # the target is its own sandbox, never named one (so rewrites are not proven on it); a DSN
            # with a password stays in the target's environment reference, never in the sandbox's
            resources["sandbox"] = SandboxDatabase(dsn=target_value, named=False)
    elif sandbox_dsn:
        resources["sandbox"] = SandboxDatabase(dsn=_by_reference(sandbox_dsn, SANDBOX_DSN_ENV)[0])
    if target_name and not target_dsn:
        resources["target"] = TargetDatabase(name=target_name, registry_dsn=store_value)
    if store_dsn:
        resources["store"] = StoreDatabase(dsn=store_value)
    if settings:
        resources["audit_settings"] = AuditSettingsResource(**settings)
    return resources


def scheduled_names(store_dsn: str | None = None) -> set[str]:
    """The targets the schedules audit: configured (DBARCH_TARGETS, or the default target) or
    registered with `dbarch targets add`. Read before a one-off audit touches the environment."""
    try:
        return set(TargetDatabase(registry_dsn=store_dsn or "").target_names())
    except DbarchError:
        return set()


def forget_one_off(instance: dg.DagsterInstance, name: str, scheduled: set[str]) -> bool:
    """After a one-off audit: remove the target's partition unless the schedules audit it, so the
    hourly capture never requests runs for a database whose DSN only that command line knew. The
    runs and the store's history stay. Returns whether the partition was removed."""
    if name in scheduled or not instance.has_dynamic_partition(TARGETS_NAME, name):
        return False
    instance.delete_dynamic_partition(TARGETS_NAME, name)
    return True


def register_target(instance: dg.DagsterInstance, name: str, week: str | None = None) -> None:
    """The target's partition, and the week's when named (an audit of a week needs both)."""
    if not instance.has_dynamic_partition(TARGETS_NAME, name):
        instance.add_dynamic_partitions(TARGETS_NAME, [name])
    if week is not None and not instance.has_dynamic_partition(WEEKS_NAME, week):
        instance.add_dynamic_partitions(WEEKS_NAME, [week])


def materialize_audit(resources: dict, instance: dg.DagsterInstance | None = None,
                      partition_key: str | None = None, *, pull_requests: bool = False,
                      now: datetime | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Materialize the audit of one partition (default: the default target, the week in progress),
    with its checks, and the pull-request step when asked. A DbarchError raised inside an asset
    comes out as itself, so callers can print its fix."""
    instance = instance or dg.DagsterInstance.ephemeral()
    name = resources["target"].target_name()
    if partition_key is None:
        partition_key = audit_key(name, week_of(now or datetime.now(timezone.utc)))
    register_target(instance, *split(partition_key))
    fail_orphaned_runs(instance)   # runs left STARTED by a killed process are marked failed first
    assets = [a for a in AUDIT_ASSETS if a is not pgss_capture] + (PR_ASSETS if pull_requests else [])
    try:
        return dg.materialize(assets, resources=resources, instance=instance, run_config=QUIET_LOGS,
                              partition_key=partition_key, raise_on_error=raise_on_error, tags=run_tags())
    except dg.DagsterExecutionStepExecutionError as exc:
        if isinstance(exc.user_exception, DbarchError):
            raise exc.user_exception from None
        raise
    except dg.DagsterError as exc:
        if "blocking asset check failed" not in str(exc):
            raise
        raise DbarchError(f"the audit stopped at a blocking check: {' '.join(str(exc).split())}",
                          "open the run in the Dagster UI (`dbarch ui`) for the check's metadata; nothing "
                          "after the failed check was written") from None


def capture_now(resources: dict, instance: dg.DagsterInstance | None = None,
                target: str | None = None) -> dg.ExecuteInProcessResult:
    """Materialize pgss_capture for a target: one stored capture of its counters."""
    instance = instance or dg.DagsterInstance.ephemeral()
    name = target or resources["target"].target_name()
    register_target(instance, name)
    return dg.materialize([pgss_capture], resources=resources, instance=instance, run_config=QUIET_LOGS,
                          partition_key=name)


def preflight(resources: dict) -> None:
    """Fail fast with a clear message before starting a run: reachable databases, pg_stat_statements."""
    from .capture import check_pg_stat_statements

    with resources["target"].connect() as conn:
        check_pg_stat_statements(conn)
    with resources["sandbox"].connect():
        pass
    with resources["store"].connect():
        pass
