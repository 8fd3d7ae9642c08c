"""Targets with an identity and a lifecycle.

A target is one database on one server: the server's system identifier (pg_control_system()) and
the database's OID, shown under a readable name, which is the partition key of the `target`
dimension and the `target` column of every store table. So:

- two servers with a database of the same name never mix: the second gets another name
  (`app@host-port`) unless it is registered under one of its own;
- a database dropped and recreated under the same name has a new OID: the old database's history
  moves to a retired name (`app~<oid>`), kept, never audited again, and the new one starts afresh;
- a target's DSN is a reference: an environment variable's name, or a DSN without password (the
  password then comes from PGPASSWORD or ~/.pgpass). A password is never written to the store.

Dagster's side (the dynamic partitions) is handled by the callers: `dbarch targets` and the
target_registry sensor.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from .db import named
from .errors import DbarchError


class UnknownTarget(DbarchError):
    pass


@dataclass(frozen=True)
class Identity:
    system_identifier: str
    database_oid: int
    database: str
    server: str

    @property
    def short(self) -> str:
        return f"{self.system_identifier}/{self.database_oid}"


def identify(conn: psycopg.Connection) -> Identity:
    """The target's identity, read from the server itself. Without the right to read the control
    file (pg_monitor), the server's address stands in for its system identifier."""
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(named("select_target_identity")).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(named("select_target_identity_unprivileged")).fetchone()
    return Identity(str(row["system_identifier"]), int(row["database_oid"]), row["database"], row["server"])


# -- DSN references --------------------------------------------------------------------------------

def strip_password(dsn: str) -> tuple[str, bool]:
    """(the DSN without its password, whether it had one)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise DbarchError("the DSN is not a valid connection string",
                          "use a URL like postgresql://user@host:5432/dbname") from None
    had = params.pop("password", None) is not None
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), had


def resolve_dsn(row: dict) -> str:
    """The DSN of a registered target, from its environment variable or its password-less DSN."""
    if row.get("dsn_env"):
        value = os.environ.get(row["dsn_env"], "").strip()
        if not value:
            raise DbarchError(f"target {row['name']!r} reads its DSN from ${row['dsn_env']}, which is not set",
                              f"export {row['dsn_env']}=postgresql://user:password@host:5432/db where the "
                              "daemon and the webserver run")
        return value
    if row.get("dsn"):
        return row["dsn"]
    raise DbarchError(f"target {row['name']!r} has no DSN reference",
                      f"dbarch targets add {row['name']} --dsn-env VAR (or --dsn without password)")


# -- the registry ----------------------------------------------------------------------------------

def registered(conn: psycopg.Connection, *, retired: bool = False) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_targets"), {"retired": retired}).fetchall()


def get(conn: psycopg.Connection, name: str) -> dict | None:
    return next((r for r in registered(conn) if r["name"] == name), None)


def known_names(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(named("select_known_target_names"))}


def require_known(conn: psycopg.Connection, name: str) -> None:
    """A clear error for a target the store knows nothing of (a typo, most often)."""
    known = known_names(conn)
    if name not in known:
        listed = ", ".join(sorted(n for n in known if "~" not in n)) or "none yet"
        raise UnknownTarget(f"unknown target {name!r} (known: {listed})",
                            "see `dbarch targets list`; audit or add a target first")


def _retired_name(name: str, old: dict) -> str:
    return f"{name}~{old['database_oid']}"


def _readable(identity: Identity) -> str:
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", identity.server).strip("-")
    return f"{identity.database}@{host}"


def ensure(store_conn: psycopg.Connection, identity: Identity, name: str, *, dsn: str | None = None,
           dsn_env: str | None = None, scheduled: bool = False) -> dict:
    """Register (or confirm) `name` as this identity. When the name belongs to another identity, the
    old one is retired with its history (a recreated database, or a DSN pointed elsewhere), so
    counters of two databases are never differenced together. Returns what happened."""
    if dsn is not None:
        dsn, had_password = strip_password(dsn)
        if had_password and dsn_env is None:
            dsn = None   # kept nowhere: the caller passes the full DSN at run time, or registers a reference
    moved = None
    with store_conn.transaction():
        store_conn.execute("SELECT pg_advisory_xact_lock(hashtext('dbarch.target'))")
        current = get(store_conn, name)
        if current is not None and (current["system_identifier"], current["database_oid"]) != (
                identity.system_identifier, identity.database_oid):
            retired = _retired_name(name, current)
            with store_conn.cursor(row_factory=dict_row) as cur:
                moved = cur.execute(named("rename_target_history"), {"old": name, "new": retired}).fetchone()
            moved = {"retired_as": retired, **moved}
        holder = next((r for r in registered(store_conn) if (r["system_identifier"], r["database_oid"]) == (
            identity.system_identifier, identity.database_oid) and r["name"] != name), None)
        if holder is not None:
            raise DbarchError(f"this database is already registered as {holder['name']!r}",
                              f"use the name {holder['name']!r}, or `dbarch targets remove {holder['name']}` first")
        store_conn.execute(named("insert_target"), {
            "name": name, "system_identifier": identity.system_identifier, "database_oid": identity.database_oid,
            "database": identity.database, "server": identity.server, "dsn_env": dsn_env,
            "dsn": dsn if dsn_env is None else None, "scheduled": scheduled})
    return {"name": name, "identity": identity.short, "retired": moved}


def name_for(store_conn: psycopg.Connection, identity: Identity, wanted: str | None = None) -> str:
    """The readable name of a database: its registered name, else `wanted` or the database name when
    free, else `<database>@<host>-<port>` (another server's database of the same name holds it)."""
    rows = registered(store_conn)
    for r in rows:
        if (r["system_identifier"], r["database_oid"]) == (identity.system_identifier, identity.database_oid):
            return r["name"]
    name = wanted or identity.database
    taken = next((r for r in rows if r["name"] == name), None)
    if taken is None or wanted:
        return name
    if taken["system_identifier"] == identity.system_identifier and taken["database"] == identity.database:
        return name   # the same server's database, recreated: the name carries on, the history restarts
    return _readable(identity)


def check_capture(store_conn: psycopg.Connection, target_conn: psycopg.Connection, name: str) -> dict:
    """Before a capture under `name`: make sure the name is this database (registering it the first
    time, retiring the old history when the database was recreated)."""
    identity = identify(target_conn)
    current = get(store_conn, name)
    if current is not None and (current["system_identifier"], current["database_oid"]) == (
            identity.system_identifier, identity.database_oid):
        return {"name": name, "identity": identity.short, "retired": None, "of": identity}
    done = ensure(store_conn, identity, name, scheduled=bool(current and current["scheduled"]),
                  dsn_env=current["dsn_env"] if current else None, dsn=current["dsn"] if current else None)
    return {**done, "of": identity}


def remove(store_conn: psycopg.Connection, name: str, *, purge: bool = False) -> dict:
    """Stop auditing a target: retired (history kept) or, with purge, its history deleted."""
    with store_conn.transaction(), store_conn.cursor(row_factory=dict_row) as cur:
        if purge:
            return {"purged": True, **cur.execute(named("delete_target_history"), {"name": name}).fetchone()}
        cur.execute(named("retire_target"), {"name": name})
        return {"purged": False, "retired": cur.rowcount}


def first_capture(store_conn: psycopg.Connection, name: str):
    return store_conn.execute(named("select_first_capture"), {"target": name}).fetchone()[0]


# -- what the resources read (the store: as configured, else $DBARCH_STORE_DSN, else embedded) ------

def _store(dsn: str = ""):
    from .resources.postgres import StoreDatabase

    return StoreDatabase(dsn=dsn)


def scheduled_names(store_dsn: str = "") -> list[str]:
    """Names registered for schedules (`dbarch targets add`); none when the store is unreachable."""
    try:
        with _store(store_dsn).connect() as conn:
            return [r["name"] for r in registered(conn) if r["scheduled"]]
    except DbarchError:
        return []


def registered_dsn(name: str, store_dsn: str = "") -> str | None:
    """The DSN of a registered, scheduled target, resolved from its reference; None when unknown."""
    try:
        with _store(store_dsn).connect() as conn:
            row = get(conn, name)
    except DbarchError:
        return None
    if row is None or not row["scheduled"]:
        return None
    return resolve_dsn(row)
