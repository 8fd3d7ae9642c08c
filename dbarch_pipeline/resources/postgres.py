"""The three connection roles: target (audited), sandbox (experiments), store (dbarch's memory).

A resource's `dsn` wins; when it is empty the role's environment variable is used, and when that is
unset the embedded server (started on demand) is the default.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import dagster as dg
import psycopg
from pydantic import Field

from .. import db, embedded
from ..errors import explain, remember
from ..memory import store
from ..safety.roles import ExecutionPolicy, bind_policy
from ..safety.walls import session_limits
from ..settings import SANDBOX_DSN_ENV, STORE_DSN_ENV, TARGET_DSN_ENV, TARGET_NAME_ENV, TARGETS_ENV, env_dsn

@contextmanager
def _named(conn: psycopg.Connection, role: str) -> Iterator[psycopg.Connection]:
    """When this connection is lost, the error that escapes the block becomes the clear one naming
    this database (and saying that nothing stored is lost). Other errors pass unchanged: with
    several connections open, only the lost one knows it was its own."""
    try:
        yield conn
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise (explain(exc, role) or exc) from exc
        raise


def _guard(conn: psycopg.Connection, policy: ExecutionPolicy) -> None:
    """Who runs SQL dbarch did not write on this connection, and the session's own limits (a dead
    client's query stops on the server within a second; idle transactions end)."""
    bind_policy(conn, policy)
    session_limits(conn)


def _embedded(database: str) -> str:
    embedded.ensure_running()
    return embedded.url(database)


def parse_targets(spec: str) -> dict[str, str]:
    """`name=dsn;name2=dsn2` (as in DBARCH_TARGETS) -> {name: dsn}."""
    out: dict[str, str] = {}
    for item in spec.replace("\n", ";").split(";"):
        if "=" in item.split("://", 1)[0]:
            name, dsn = item.split("=", 1)
            if name.strip() and dsn.strip():
                out[name.strip()] = dsn.strip()
    return out


class TargetDatabase(dg.ConfigurableResource):
    """The audited databases: pg_stat_statements, catalogs and statistics are read, nothing written.

    One default target (`dsn`/`name`, or $DBARCH_TARGET_DSN, or the embedded demo), plus any number
    listed in `targets` or $DBARCH_TARGETS as `name=dsn;name2=dsn2`; each is audited on its own."""

    dsn: str = Field(default="", description="Target DSN; empty means $DBARCH_TARGET_DSN, else the embedded demo.")
    name: str = Field(default="", description="Name the results are stored under; default the database name.")
    targets: str = Field(default="", description="More targets, `name=dsn;...`; empty means $DBARCH_TARGETS.")
    registry_dsn: str = Field(default="", description="Store holding the targets registered with `dbarch targets "
                                                      "add`; empty means $DBARCH_STORE_DSN, else the embedded server.")
    read_only_role: str = Field(default="", description="Role that runs SQL dbarch did not write (ask); empty: "
                                                        "dbarch_reader when the session is a superuser.")
    accept_superuser_risk: bool = Field(default=False, description="Run generated SQL as a superuser when no "
                                                                   "least-privilege role exists (not advised).")

    def conninfo(self) -> str:
        return self.dsn or env_dsn(TARGET_DSN_ENV) or _embedded("demo")

    def target_name(self) -> str:
        return self.name or os.environ.get(TARGET_NAME_ENV, "").strip() or db.database_name(self.conninfo())

    def listed(self) -> dict[str, str]:
        return parse_targets(self.targets or os.environ.get(TARGETS_ENV, ""))

    def target_names(self) -> list[str]:
        """Every target to audit: the listed ones, else the default one; plus those registered with
        `dbarch targets add` (see dbarch_pipeline/targets.py)."""
        from .. import targets

        listed = self.listed()
        names = list(listed) if listed else [self.target_name()]
        return names + [n for n in targets.scheduled_names(self.registry_dsn) if n not in names]

    def conninfo_for(self, target: str | None) -> str:
        """The DSN of a target by name; an explicitly configured `dsn` wins for its own name."""
        if target is None or (self.dsn and target == self.target_name()):
            return self.conninfo()
        listed = self.listed()
        if target in listed:
            return listed[target]
        default = target == self.target_name()
        if default and env_dsn(TARGET_DSN_ENV):
            return self.conninfo()
        from .. import targets
        from ..errors import DbarchError

        # a name given without a DSN (`audit_resources(target_name=...)`) is the registered target's,
        # never the embedded demo's
        registered = targets.registered_dsn(target, self.registry_dsn)
        if registered:
            return registered
        if default:
            return self.conninfo()
        raise DbarchError(f"unknown target {target!r}: it is neither the default target, in DBARCH_TARGETS, nor registered",
                          f"add it to DBARCH_TARGETS as {target}=postgresql://user@host:5432/db, or "
                          f"`dbarch targets add {target} --dsn-env VAR`")

    @contextmanager
    def connect(self, target: str | None = None) -> Iterator[psycopg.Connection]:
        conninfo = self.conninfo_for(target)
        remember("target", conninfo)
        with db.connect(conninfo, "target", quiet_stats=True) as conn:
            _guard(conn, ExecutionPolicy(reader_role=self.read_only_role or None,
                                         accept_superuser_risk=self.accept_superuser_risk, proofs_allowed=False))
            with _named(conn, "target"):
                yield conn


class SandboxDatabase(dg.ConfigurableResource):
    """Where experiments run: every one inside a rolled-back transaction with timeouts. A configured
    sandbox serves the default target; any other target is its own sandbox."""

    dsn: str = Field(default="", description="Sandbox DSN; empty means $DBARCH_SANDBOX_DSN, else the target.")
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 2_000
    named: bool = Field(default=True, description="False when `dsn` is only the target's (no sandbox was "
                                                  "named): rewrites are then never proven on it.")
    read_only_role: str = Field(default="", description="Role that runs rewrite proofs; empty: dbarch_reader "
                                                        "when the session is a superuser.")
    accept_superuser_risk: bool = Field(default=False, description="Prove rewrites as a superuser when no "
                                                                   "least-privilege role exists (not advised).")

    def proofs_allowed(self, conninfo: str, default_target: bool) -> bool:
        """Rewrites run only on a sandbox: one named as such, or dbarch's own embedded server; never on
        a primary that was not named as its own sandbox."""
        if embedded.is_embedded(conninfo):
            return True
        if not default_target:
            return False   # another target is its own sandbox by default, never named
        return bool((self.dsn and self.named) or env_dsn(SANDBOX_DSN_ENV))

    def conninfo(self) -> str:
        return self.dsn or env_dsn(SANDBOX_DSN_ENV) or env_dsn(TARGET_DSN_ENV) or _embedded("demo")

    def conninfo_for(self, target_conninfo: str | None, default_target: bool) -> str:
        if target_conninfo is None or (default_target and (self.dsn or env_dsn(SANDBOX_DSN_ENV))):
            return self.conninfo()
        return target_conninfo

    @contextmanager
    def connect(self, target_conninfo: str | None = None, *, default_target: bool = True
                ) -> Iterator[psycopg.Connection]:
        conninfo = self.conninfo_for(target_conninfo, default_target)
        remember("sandbox", conninfo)
        with db.connect(conninfo, "sandbox", quiet_stats=True) as conn:
            _guard(conn, ExecutionPolicy(reader_role=self.read_only_role or None,
                                         accept_superuser_risk=self.accept_superuser_risk,
                                         proofs_allowed=self.proofs_allowed(conninfo, default_target)))
            with _named(conn, "sandbox"):
                yield conn


class StoreDatabase(dg.ConfigurableResource):
    """dbarch's own tables, with pgvector; pending schema migrations are applied on connect."""

    dsn: str = Field(default="", description="Store DSN; empty means $DBARCH_STORE_DSN, else the embedded server.")

    def conninfo(self) -> str:
        return self.dsn or env_dsn(STORE_DSN_ENV) or _embedded("dbarch")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        remember("store", self.conninfo())
        with db.connect(self.conninfo(), "store") as conn:
            store.ensure_schema(conn)
            with _named(conn, "store"):
                yield conn


def with_generated_sql_role(resources: dict, role: str | None, accept_superuser_risk: bool) -> dict:
    """The resources with the role that runs SQL dbarch did not write (rewrite proofs, ask) set on
    the target and the sandbox (the CLI's --read-only-role and --i-accept-superuser-risk)."""
    if not role and not accept_superuser_risk:
        return resources
    out = dict(resources)
    for key in ("target", "sandbox"):
        if key in out:
            out[key] = out[key].model_copy(update={"read_only_role": role or "",
                                                   "accept_superuser_risk": accept_superuser_risk})
    return out
