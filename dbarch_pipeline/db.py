"""Connections and named SQL.

Named queries live in `sql/queries/<verb_object>.sql`, one statement per file, parameters bound by
psycopg. Every statement dbarch sends to an audited database starts with the DBARCH_TAG comment so
that pg_stat_statements rows of dbarch's own work can be recognised and excluded from audits.
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import DbarchError, MissingExtension, UnreachableDatabase
from .settings import SQL_DIR

DBARCH_TAG = "/* dbarch */"
APPLICATION_NAME = "dbarch"


@functools.cache
def load_sql(name: str) -> str:
    """The text of `sql/queries/<name>.sql`."""
    path = SQL_DIR / "queries" / f"{name}.sql"
    return path.read_text()


_FIRST_WORD = re.compile(r"(\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*)(\w+)", re.S)


def tag(text: str) -> str:
    r"""The statement with DBARCH_TAG after its first word. pg_stat_statements keeps a statement's
    text from its first token on, so a leading comment would be lost; one inside is kept.

    >>> tag("-- why\nSELECT 1")
    '-- why\nSELECT /* dbarch */ 1'
    """
    m = _FIRST_WORD.match(text)
    return f"{text[:m.end()]} {DBARCH_TAG}{text[m.end():]}" if m else text


def named(name: str) -> sql.SQL:
    """A named query as a psycopg SQL object, tagged so audits skip it."""
    return sql.SQL(tag(load_sql(name)))


def redact(conninfo: str) -> str:
    """The conninfo without its password, for messages and metadata (safety.secrets)."""
    from .safety.secrets import redact as _redact

    return _redact(conninfo)


def database_name(conninfo: str) -> str:
    try:
        return conninfo_to_dict(conninfo).get("dbname") or "postgres"
    except psycopg.ProgrammingError:
        return "unknown"


def connect(conninfo: str, role: str, *, autocommit: bool = True, quiet_stats: bool = False,
            connect_timeout: int = 10) -> psycopg.Connection:
    """Open a connection, turning failures into an error that names the role and the fix.

    quiet_stats: stop pg_stat_statements from recording this session (superuser only; without the
    privilege the DBARCH_TAG comment still lets audits exclude our statements).
    """
    try:
        conn = psycopg.connect(
            make_conninfo(conninfo, application_name=APPLICATION_NAME,
                          connect_timeout=str(connect_timeout)),
            autocommit=autocommit,
        )
    except psycopg.OperationalError as exc:
        from .safety.secrets import scrub

        reason = scrub(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, conninfo)
        raise UnreachableDatabase(
            f"cannot connect to the {role} database {redact(conninfo)}: {reason}",
            f"check the {role} DSN (host, port, database, user, password) and that the server is "
            "running; for the embedded default run `dbarch db start`",
        ) from None
    except psycopg.ProgrammingError as exc:
        from .safety.secrets import scrub

        raise DbarchError(
            f"the {role} DSN is not a valid connection string: {scrub(str(exc), conninfo)}",
            "use a URL like postgresql://user:password@host:5432/dbname",
        ) from None
    if quiet_stats:
        _quiet_pg_stat_statements(conn)
    return conn


def _quiet_pg_stat_statements(conn: psycopg.Connection) -> None:
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("SET pg_stat_statements.track = 'none'")
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject,
            psycopg.errors.InvalidParameterValue, psycopg.errors.CantChangeRuntimeParam):
        pass
    finally:
        conn.autocommit = was_autocommit


@contextmanager
def rolled_back(conn: psycopg.Connection, *, statement_timeout_ms: int, lock_timeout_ms: int
                ) -> Iterator[psycopg.Connection]:
    """A transaction that is always rolled back, with statement and lock timeouts.

    Every experiment on the sandbox runs inside one of these: whatever it creates (indexes,
    statistics) disappears at the end, and a stuck lock or a slow statement is cancelled.
    """
    if not conn.autocommit:
        raise RuntimeError("rolled_back() needs an autocommit connection to own its transaction")
    conn.execute("BEGIN")
    try:
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(statement_timeout_ms))))
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(int(lock_timeout_ms))))
        yield conn
    finally:
        conn.execute("ROLLBACK")


def require_extension(conn: psycopg.Connection, extension: str, role: str, fix: str) -> None:
    row = conn.execute(tag("SELECT 1 FROM pg_extension WHERE extname = %s"), (extension,)).fetchone()
    if row is None:
        raise MissingExtension(f"the {role} database has no {extension} extension", fix)
