"""The three connection roles: target (audited), sandbox (experiments), store (dbarch's memory).

A resource's `dsn` wins; when it is empty the role's environment variable is used, and when that is
unset the embedded server (started on demand) is the default.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import dagster as dg
import psycopg
from pydantic import Field

from .. import db, embedded
from ..memory import store
from ..settings import SANDBOX_DSN_ENV, STORE_DSN_ENV, TARGET_DSN_ENV, TARGET_NAME_ENV, env_dsn

def _embedded(database: str) -> str:
    embedded.ensure_running()
    return embedded.url(database)


class TargetDatabase(dg.ConfigurableResource):
    """The audited database: pg_stat_statements, catalogs and statistics are read here, nothing written."""

    dsn: str = Field(default="", description="Target DSN; empty means $DBARCH_TARGET_DSN, else the embedded demo.")
    name: str = Field(default="", description="Name the results are stored under; default the database name.")

    def conninfo(self) -> str:
        return self.dsn or env_dsn(TARGET_DSN_ENV) or _embedded("demo")

    def target_name(self) -> str:
        import os

        return self.name or os.environ.get(TARGET_NAME_ENV, "").strip() or db.database_name(self.conninfo())

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with db.connect(self.conninfo(), "target", quiet_stats=True) as conn:
            yield conn


class SandboxDatabase(dg.ConfigurableResource):
    """Where experiments run: every one inside a rolled-back transaction with timeouts."""

    dsn: str = Field(default="", description="Sandbox DSN; empty means $DBARCH_SANDBOX_DSN, else the target.")
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 2_000

    def conninfo(self) -> str:
        return self.dsn or env_dsn(SANDBOX_DSN_ENV) or env_dsn(TARGET_DSN_ENV) or _embedded("demo")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with db.connect(self.conninfo(), "sandbox", quiet_stats=True) as conn:
            yield conn


class StoreDatabase(dg.ConfigurableResource):
    """dbarch's own tables, with pgvector; pending schema migrations are applied on connect."""

    dsn: str = Field(default="", description="Store DSN; empty means $DBARCH_STORE_DSN, else the embedded server.")

    def conninfo(self) -> str:
        return self.dsn or env_dsn(STORE_DSN_ENV) or _embedded("dbarch")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with db.connect(self.conninfo(), "store") as conn:
            store.ensure_schema(conn)
            yield conn
