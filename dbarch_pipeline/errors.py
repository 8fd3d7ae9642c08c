"""Errors a user can act on: each names the problem and the fix.

`explain(exc)` turns what a database (or Dagster's storage) raised into such an error: a lock not
granted in time, a statement cancelled by its timeout, a lost connection — naming which database
(target, sandbox, store or Dagster's instance) and saying what was kept. The CLI prints it and exits
with status 2 instead of a traceback.
"""

from __future__ import annotations

from typing import Iterator


class DbarchError(Exception):
    """A problem the user can fix; `fix` says how."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class UnreachableDatabase(DbarchError):
    pass


class MissingExtension(DbarchError):
    pass


class LostConnection(DbarchError):
    pass


# role -> conninfo of the databases this process connected to (resources.postgres remembers them), so
# that a connection lost mid-run can be named
_databases: dict[str, str] = {}
KEPT = ("nothing stored is lost: every write to the store is one transaction, and experiments on the "
        "sandbox are always rolled back")


def remember(role: str, conninfo: str) -> None:
    _databases[role] = conninfo


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "user_exception", None), e.__cause__, e.__context__]


def _role_of(exc: BaseException) -> str | None:
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is None:
        return None
    try:
        where = (pgconn.host.decode(), pgconn.port.decode(), pgconn.db.decode())
    except Exception:  # noqa: BLE001 - a closed pgconn has no attributes to read
        return None
    from psycopg.conninfo import conninfo_to_dict

    for role, info in _databases.items():
        try:
            params = conninfo_to_dict(info)
        except Exception:  # noqa: BLE001
            continue
        if (params.get("host", ""), str(params.get("port", "5432")), params.get("dbname", "")) == where:
            return role
    return None


def _unreachable_now() -> list[str]:
    """The remembered databases that no longer answer (to name which connection was lost)."""
    import psycopg

    down = []
    for role, info in _databases.items():
        try:
            psycopg.connect(info, connect_timeout=2).close()
        except psycopg.Error:
            down.append(role)
    return down


def explain(exc: BaseException, role: str | None = None) -> DbarchError | None:
    """The clear error for `exc` (or anything it wraps), or None when it is not a database problem.
    role: the database it came from, when the caller knows (the resources do)."""
    import psycopg

    from .safety.secrets import scrub

    for e in _chain(exc):
        if isinstance(e, DbarchError):
            return e
    for e in _chain(exc):
        name = type(e).__name__
        text = scrub(" ".join(str(e).split()) or name, *_databases.values())
        if isinstance(e, psycopg.Error):
            role = role or _role_of(e)
            where = f"the {role} database" if role else "a database"
            if isinstance(e, psycopg.errors.LockNotAvailable):
                return DbarchError(f"a lock on {where} was not granted within lock_timeout: {text}",
                                   "another session holds it (a long transaction, a migration); run again when it "
                                   f"is done. {KEPT}")
            if isinstance(e, psycopg.errors.QueryCanceled):
                return DbarchError(f"a statement on {where} ran past its statement_timeout and was cancelled: {text}",
                                   f"run again on a quieter database or raise the timeout. {KEPT}")
            if isinstance(e, (psycopg.OperationalError, psycopg.errors.AdminShutdown,
                              psycopg.errors.CannotConnectNow)) or (getattr(e, "sqlstate", "") or "").startswith("08"):
                if role is None:
                    down = _unreachable_now()
                    where = " and ".join(f"the {r} database" for r in down) if down else where
                return LostConnection(f"lost the connection to {where}: {text}",
                                      "check that the server is running and reachable, then run the command again; "
                                      f"{KEPT}")
            if isinstance(e, psycopg.errors.InsufficientPrivilege):
                return DbarchError(f"permission denied on {where}: {text}",
                                   "grant the connecting role what the message names (`dbarch doctor` checks the "
                                   "role generated SQL runs as)")
            return DbarchError(f"{where} refused a statement: {text}"
                               + (f" (SQLSTATE {e.sqlstate})" if getattr(e, "sqlstate", None) else ""),
                               "see the message; nothing was written")
        if name in ("DagsterPostgresException",) or type(e).__module__.startswith("sqlalchemy.exc"):
            return LostConnection(f"lost the connection to Dagster's instance storage (DAGSTER_PG_URL; by default "
                                  f"the embedded server's dagster database): {text[:300]}",
                                  "check that the server is running (`dbarch db start` for the embedded one), then "
                                  f"run again; the run may show as failed in the UI. {KEPT}")
    return None
