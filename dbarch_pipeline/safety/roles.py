"""Least privilege: the role `ask` and the rewrite proofs run as.

The embedded default creates `dbarch_reader` (NOLOGIN, not a superuser, no file, replication,
signal or dblink rights; USAGE and SELECT on the allowed schemas only; `temp_file_limit` and
timeouts set on the role itself). A superuser session switches to it with SET ROLE. For a user's
database, `grants(...)` gives the exact statements and `doctor(...)` checks an existing setup.

Who runs a statement is decided by `effective_role(conn, requested, accept_superuser_risk)`:
- a role named explicitly (`--read-only-role`) is used;
- otherwise, a superuser session uses `dbarch_reader` when it exists;
- a superuser is never used unless the user passes `--i-accept-superuser-risk`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import psycopg
from psycopg import sql

from ..errors import DbarchError

READER_ROLE = "dbarch_reader"
ACCEPT_FLAG = "--i-accept-superuser-risk"
# Memberships that give a role files, signals, replication or every table: never for the reader.
DANGEROUS_MEMBERSHIPS = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
                         "pg_signal_backend", "pg_read_all_data", "pg_write_all_data", "pg_read_all_settings",
                         "pg_read_all_stats", "pg_monitor", "pg_checkpoint", "pg_maintain", "pg_signal_autovacuum_worker",
                         "pg_use_reserved_connections", "pg_create_subscription")
ROLE_SETTINGS = {"temp_file_limit": "256MB", "statement_timeout": "30s", "lock_timeout": "2s",
                 "idle_in_transaction_session_timeout": "60s"}


@dataclass(frozen=True)
class ExecutionPolicy:
    """Who runs SQL that dbarch did not write, on one connection."""

    reader_role: str | None = None          # None: READER_ROLE when it exists and the session is a superuser
    accept_superuser_risk: bool = False
    proofs_allowed: bool = True             # may rewrites be proven (run) on this connection?
    proofs_refusal: str = ("rewrite proofs run on a sandbox only: this connection is the audited primary, "
                           "not named as its own sandbox (name it with --sandbox-dsn)")


_policies: "weakref.WeakKeyDictionary[psycopg.Connection, ExecutionPolicy]" = weakref.WeakKeyDictionary()


def bind_policy(conn: psycopg.Connection, policy: ExecutionPolicy) -> None:
    """Attach a policy to a connection (the resources do, from their configuration)."""
    _policies[conn] = policy


def policy_of(conn: psycopg.Connection) -> ExecutionPolicy:
    return _policies.get(conn, ExecutionPolicy())


def grants(role: str = READER_ROLE, schemas: Sequence[str] = ("public",), database: str | None = None) -> list[str]:
    """The statements that create the least-privilege role for `schemas` (as SQL text, to print)."""
    ident = sql.Identifier(role).as_string(None)
    out = [f"CREATE ROLE {ident} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;"]
    if database:
        out.append(f"GRANT CONNECT ON DATABASE {sql.Identifier(database).as_string(None)} TO {ident};")
    for schema in schemas:
        s = sql.Identifier(schema).as_string(None)
        out += [f"GRANT USAGE ON SCHEMA {s} TO {ident};",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {ident};",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {ident};"]
    out += [f"ALTER ROLE {ident} SET {k} = '{v}';" for k, v in ROLE_SETTINGS.items()]
    out.append(f"GRANT {ident} TO <the user dbarch connects as>;")
    return out


def ensure_reader(conn: psycopg.Connection, schemas: Sequence[str] = ("public",), role: str = READER_ROLE) -> None:
    """Create the reader role if missing and grant it SELECT on `schemas` of this database (superuser;
    used for the embedded server). Idempotent."""
    ident = sql.Identifier(role)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        try:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                 "NOBYPASSRLS").format(ident))
        except psycopg.errors.DuplicateObject:
            pass   # another session created it meanwhile
        for key, value in ROLE_SETTINGS.items():
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident, sql.Identifier(key), sql.Literal(value)))
    for schema in schemas:
        s = sql.Identifier(schema)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, ident))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, ident))


def _is_superuser(conn: psycopg.Connection, role: str) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0])


def effective_role(conn: psycopg.Connection, requested: str | None = None,
                   accept_superuser_risk: bool | None = None) -> str | None:
    """The role to SET before running SQL dbarch did not write (None: stay as the session user).
    Raises DbarchError when that would be a superuser and the risk was not accepted."""
    policy = policy_of(conn)
    requested = requested or policy.reader_role
    accept = policy.accept_superuser_risk if accept_superuser_risk is None else accept_superuser_risk
    session = conn.execute("SELECT session_user::text").fetchone()[0]
    if requested:
        if _is_superuser(conn, requested) and not accept:
            raise DbarchError(f"the role {requested!r} chosen to run generated SQL is a superuser",
                              f"use a least-privilege role (dbarch doctor prints the GRANTs), or pass "
                              f"{ACCEPT_FLAG} to run it anyway")
        return requested
    if not _is_superuser(conn, session):
        return None
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone():
        return READER_ROLE
    if accept:
        return None
    raise DbarchError(
        f"refusing to run SQL that dbarch did not write as {session!r}, a superuser",
        f"create the least-privilege role ({READER_ROLE}; `dbarch doctor` prints the GRANTs) or name one with "
        f"--read-only-role; to run as the superuser anyway pass {ACCEPT_FLAG}")


def set_role(conn: psycopg.Connection, role: str | None) -> None:
    """SET LOCAL ROLE inside the caller's transaction, with an error naming the fix."""
    if not role:
        return
    try:
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except psycopg.Error as exc:
        raise DbarchError(
            f"cannot run as the read-only role {role!r}: {str(exc).strip().splitlines()[0]}",
            f"create it and let the connecting user use it: {' '.join(grants(role)[:1])} "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; GRANT {role} TO <user>; "
            "or leave --read-only-role unset",
        ) from None
    # a role may inherit superuser-like rights through memberships: refuse those too (a superuser has
    # them all; using one was already refused unless the risk was accepted)
    if not conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone()[0]:
        _check_memberships(conn, role)


def _check_memberships(conn: psycopg.Connection, role: str) -> None:
    rows = conn.execute("SELECT r.rolname::text FROM pg_roles r WHERE r.rolname = ANY(%s) "
                        "AND pg_has_role(%s, r.oid, 'USAGE')", (list(DANGEROUS_MEMBERSHIPS), role)).fetchall()
    if rows:
        names = ", ".join(r[0] for r in rows)
        raise DbarchError(f"the role {role!r} that runs generated SQL is a member of {names}",
                          f"revoke them: REVOKE {names} FROM {role}; (it needs SELECT on the allowed schemas only)")


def doctor(conn: psycopg.Connection, role: str | None = None, schemas: Sequence[str] = ("public",)) -> dict:
    """Check the role that would run generated SQL on this database; every problem comes with the
    exact statement that fixes it."""
    problems: list[dict] = []
    session = conn.execute("SELECT session_user::text").fetchone()[0]
    role = role or (READER_ROLE if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                                 (READER_ROLE,)).fetchone() else session)
    row = conn.execute("SELECT rolsuper, rolreplication, rolbypassrls, rolcreaterole, rolcreatedb "
                       "FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        return {"role": role, "ok": False,
                "problems": [{"problem": f"the role {role} does not exist", "fix": "\n".join(grants(role, schemas))}]}
    ident = sql.Identifier(role).as_string(None)
    superuser, replication, bypassrls, createrole, createdb = row
    if superuser:
        problems.append({"problem": f"{role} is a superuser: generated SQL could do anything",
                         "fix": "\n".join(grants(READER_ROLE, schemas))})
    for flag, word in ((replication, "REPLICATION"), (bypassrls, "BYPASSRLS"), (createrole, "CREATEROLE"),
                       (createdb, "CREATEDB")):
        if flag and not superuser:
            problems.append({"problem": f"{role} has {word}", "fix": f"ALTER ROLE {ident} NO{word};"})
    for (member,) in conn.execute("SELECT r.rolname::text FROM pg_roles r WHERE r.rolname = ANY(%s) "
                                  "AND pg_has_role(%s, r.oid, 'MEMBER')", (list(DANGEROUS_MEMBERSHIPS), role)):
        problems.append({"problem": f"{role} is a member of {member}", "fix": f"REVOKE {member} FROM {ident};"})
    for schema in schemas:
        s = sql.Identifier(schema).as_string(None)
        if not conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')", (role, schema)).fetchone()[0]:
            problems.append({"problem": f"{role} cannot use schema {schema}", "fix": f"GRANT USAGE ON SCHEMA {s} TO {ident};"})
        missing = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p') "
            "AND NOT has_table_privilege(%s, c.oid, 'SELECT')", (schema, role)).fetchone()[0]
        if missing:
            problems.append({"problem": f"{role} cannot read {missing} relation(s) of schema {schema}",
                             "fix": f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {ident};\n"
                                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {ident};"})
    for (schema,) in conn.execute(
            "SELECT DISTINCT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname <> ALL(%s) "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%' "
            "AND has_table_privilege(%s, c.oid, 'SELECT')", (list(schemas), role)):
        s = sql.Identifier(schema).as_string(None)
        problems.append({"problem": f"{role} can read tables of {schema}, outside the allowed schemas",
                         "fix": f"REVOKE SELECT ON ALL TABLES IN SCHEMA {s} FROM {ident};"})
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'dblink'").fetchone() and conn.execute(
            "SELECT has_function_privilege(%s, 'dblink_exec(text, text)', 'EXECUTE')", (role,)).fetchone()[0]:
        problems.append({"problem": f"{role} may call dblink (it reaches other databases with its own credentials)",
                         "fix": "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA <dblink's schema> FROM PUBLIC;"})
    settings = dict(r for r in conn.execute(
        "SELECT split_part(s, '=', 1), split_part(s, '=', 2) FROM pg_db_role_setting d "
        "JOIN pg_roles r ON r.oid = d.setrole, unnest(d.setconfig) s WHERE r.rolname = %s", (role,)))
    for key, value in ROLE_SETTINGS.items():
        if key not in settings and not superuser:
            problems.append({"problem": f"{role} has no {key} of its own",
                             "fix": f"ALTER ROLE {ident} SET {key} = '{value}';"})
    if role != session and not conn.execute("SELECT pg_has_role(session_user, %s, 'SET')" if
                                            conn.info.server_version >= 160000 else
                                            "SELECT pg_has_role(session_user, %s, 'MEMBER')", (role,)).fetchone()[0]:
        problems.append({"problem": f"{session} (the connecting user) cannot SET ROLE {role}",
                         "fix": f"GRANT {ident} TO {sql.Identifier(session).as_string(None)};"})
    return {"role": role, "session_user": session, "ok": not problems, "problems": problems}
