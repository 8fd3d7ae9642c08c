"""Dagster's storage for the project's dagster.yaml, chosen when an instance loads, so `dagster dev`
and `dagster definitions validate` work in the project root with no extra environment:

1. DAGSTER_PG_URL when set (a team deployment, docker compose, `dbarch ui`);
2. else the embedded server's `dagster` database when that server is running (after `make demo`):
   the same runs, schedules and sensor cursors `dbarch ui` shows;
3. else SQLite files under DAGSTER_HOME (or `.dbarch/dagster_home`), Dagster's local default.

The choice is said once per process on stderr. Every Dagster process (webserver, daemon, run
workers) loads the instance from the same dagster.yaml and so makes the same choice, as long as the
embedded server is not started or stopped in between.
"""

from __future__ import annotations

import os
import sys

import dagster as dg
from dagster._core.storage.base_storage import DagsterStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData

PG_URL_ENV = "DAGSTER_PG_URL"
_said: set[str] = set()


def choose() -> tuple[str, str]:
    """(kind, where): 'postgres' with its URL, or 'sqlite' with its folder."""
    url = os.environ.get(PG_URL_ENV, "").strip()
    if url:
        return "postgres", url
    from . import embedded

    try:
        running = embedded.status().running
    except Exception:   # no embedded server installed or configured here: local files
        running = False
    if running:
        return "postgres", embedded.url("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    from .settings import data_dir

    home = os.environ.get("DAGSTER_HOME") or str(data_dir() / "dagster_home")
    return "sqlite", os.path.join(home, "storage")


def _say(kind: str, where: str) -> None:
    from .db import redact

    text = (f"dbarch: Dagster storage: PostgreSQL {redact(where.replace('+psycopg2', ''))}"
            + ("" if os.environ.get(PG_URL_ENV) else " (the embedded server is running)")
            if kind == "postgres" else
            f"dbarch: Dagster storage: SQLite in {where} (set DAGSTER_PG_URL, or `dbarch db start`, for PostgreSQL)")
    if text not in _said:
        _said.add(text)
        print(text, file=sys.stderr, flush=True)


class DbarchStorage(DagsterStorage, ConfigurableClass):
    """Never instantiated itself: from_config_value returns the storage chosen above."""

    @classmethod
    def config_type(cls):
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value):
        kind, where = choose()
        _say(kind, where)
        if kind == "postgres":
            from dagster_postgres import DagsterPostgresStorage

            return DagsterPostgresStorage(postgres_url=where, inst_data=inst_data)
        from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

        os.makedirs(where, exist_ok=True)
        return DagsterSqliteStorage.from_local(base_dir=where, inst_data=inst_data)

    # abstract members, unreachable: from_config_value returns a concrete storage
    @property
    def inst_data(self):   # pragma: no cover
        raise NotImplementedError

    def event_log_storage(self):   # pragma: no cover
        raise NotImplementedError

    def run_storage(self):   # pragma: no cover
        raise NotImplementedError

    def schedule_storage(self):   # pragma: no cover
        raise NotImplementedError


__all__ = ["DbarchStorage", "choose", "dg"]
