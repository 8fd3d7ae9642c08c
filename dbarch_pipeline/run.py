"""Running the audit through the real Dagster asset graph, from the CLI or a script.

`dbarch demo` and `dbarch audit` materialize the same assets the schedule runs; the Dagster instance
is the project's own (DAGSTER_HOME under .dbarch/, storage on the embedded server through
dagster.yaml), so the runs appear in `dagster dev` afterwards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from . import embedded
from .definitions import default_resources
from .defs.assets import AUDIT_ASSETS
from .defs.checks import AUDIT_CHECKS
from .defs.pr_assets import PR_ASSETS
from .errors import DbarchError
from .resources.audit_settings import AuditSettingsResource
from .resources.postgres import SandboxDatabase, StoreDatabase, TargetDatabase
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


def audit_resources(*, target_dsn: str | None = None, sandbox_dsn: str | None = None,
                    store_dsn: str | None = None, settings: dict | None = None) -> dict:
    resources = default_resources()
    if target_dsn:
        resources["target"] = TargetDatabase(dsn=target_dsn)
        # experiments run on the target unless a sandbox is named
        resources["sandbox"] = SandboxDatabase(dsn=sandbox_dsn or target_dsn)
    elif sandbox_dsn:
        resources["sandbox"] = SandboxDatabase(dsn=sandbox_dsn)
    if store_dsn:
        resources["store"] = StoreDatabase(dsn=store_dsn)
    if settings:
        resources["audit_settings"] = AuditSettingsResource(**settings)
    return resources


def materialize_audit(resources: dict, instance: dg.DagsterInstance | None = None,
                      partition_key: str | None = None, *, pull_requests: bool = False
                      ) -> dg.ExecuteInProcessResult:
    """Materialize the whole audit group (with its checks, and the pull-request step when asked);
    a DbarchError raised inside an asset comes out as itself, so callers can print its fix."""
    assets = [*AUDIT_ASSETS, *AUDIT_CHECKS, *(PR_ASSETS if pull_requests else [])]
    try:
        return dg.materialize(assets, resources=resources, instance=instance,
                              run_config=QUIET_LOGS, partition_key=partition_key)
    except dg.DagsterExecutionStepExecutionError as exc:
        if isinstance(exc.user_exception, DbarchError):
            raise exc.user_exception from None
        raise


def preflight(resources: dict) -> None:
    """Fail fast with a clear message before starting a run: reachable databases, pg_stat_statements."""
    from .capture import check_pg_stat_statements

    with resources["target"].connect() as conn:
        check_pg_stat_statements(conn)
    with resources["sandbox"].connect():
        pass
    with resources["store"].connect():
        pass
