"""The second wall: what PostgreSQL enforces whatever the allow-list decided.

- `read_only_section(conn)`: inside the caller's transaction (the benchmark's, which built an
  index), `SAVEPOINT; SET LOCAL transaction_read_only = on; ...; ROLLBACK TO SAVEPOINT`: writes,
  `nextval`, `lo_export` and the like fail, and the transaction is writable again afterwards.
- `session_limits(conn)`: the timeouts a session may set for itself (statement, lock, idle in
  transaction, client connection check), so that a dead client's query stops on the server too.
  `temp_file_limit` needs a superuser to SET: the least-privilege role gets it from
  `ALTER ROLE ... SET` (see roles.py), and a superuser session sets it here.
- `fetch_capped(cur, ...)`: rows fetched in batches from a server-side cursor, stopping as soon as
  a cap on rows, bytes per value or total bytes is reached.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
from psycopg import sql

from ..db import tag

CONNECTION_CHECK_MS = 1_000
IDLE_IN_TRANSACTION_MS = 60_000
TEMP_FILE_LIMIT = "256MB"


@contextmanager
def read_only_section(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Run a measurement read-only inside the caller's (writable) transaction; on an idle
    autocommit connection, in a READ ONLY transaction of its own that is rolled back."""
    status = conn.info.transaction_status
    if status == psycopg.pq.TransactionStatus.IDLE and conn.autocommit:
        conn.execute("BEGIN READ ONLY")
        try:
            yield conn
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.UNKNOWN:
                conn.execute("ROLLBACK")
        return
    if status != psycopg.pq.TransactionStatus.INTRANS:
        raise RuntimeError("read_only_section() runs inside an open, healthy transaction")
    # one round trip in, one out (fixed text, simple protocol): the benchmark runs this thousands of times
    conn.execute("SAVEPOINT dbarch_read_only; SET LOCAL transaction_read_only = on")
    try:
        yield conn
    finally:
        if conn.info.transaction_status in (psycopg.pq.TransactionStatus.INTRANS,
                                            psycopg.pq.TransactionStatus.INERROR):
            conn.execute("ROLLBACK TO SAVEPOINT dbarch_read_only; RELEASE SAVEPOINT dbarch_read_only")


def session_limits(conn: psycopg.Connection, *, idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS,
                   connection_check_ms: int = CONNECTION_CHECK_MS, temp_file_limit: str | None = None) -> dict:
    """Set the session's limits where the role may; returns what was set (and what was not, why).
    temp_file_limit is off by default here: dbarch's own index builds may sort more than generated
    SQL ever may (transaction_limits sets it for that)."""
    done: dict[str, str] = {}
    wanted = [("idle_in_transaction_session_timeout", str(int(idle_in_transaction_ms))),
              ("client_connection_check_interval", str(int(connection_check_ms)))]
    if temp_file_limit:
        wanted.append(("temp_file_limit", temp_file_limit))
    for name, value in wanted:
        try:
            conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value)))
            done[name] = value
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject,
                psycopg.errors.InvalidParameterValue, psycopg.errors.CantChangeRuntimeParam) as exc:
            done[name] = f"not set: {str(exc).strip().splitlines()[0]}"
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.rollback()
    return done


def transaction_limits(conn: psycopg.Connection, *, idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS,
                       connection_check_ms: int = CONNECTION_CHECK_MS, temp_file_limit: str = TEMP_FILE_LIMIT) -> None:
    """SET LOCAL the limits inside the caller's transaction, before any SET ROLE: the idle and
    connection-check timeouts any role may set; temp_file_limit only a superuser may (the
    least-privilege role carries its own, from ALTER ROLE ... SET, when it logs in)."""
    conn.execute(sql.SQL("SET LOCAL idle_in_transaction_session_timeout = {}").format(
        sql.Literal(int(idle_in_transaction_ms))))
    if conn.info.server_version >= 140000:
        conn.execute(sql.SQL("SET LOCAL client_connection_check_interval = {}").format(
            sql.Literal(int(connection_check_ms))))
    if conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone()[0]:
        conn.execute(sql.SQL("SET LOCAL temp_file_limit = {}").format(sql.Literal(temp_file_limit)))
    hide_custom_settings(conn)


def custom_setting_names(conn: psycopg.Connection) -> list[str]:
    """Custom (dotted) settings this session may carry, from where they are configured: the server's
    files (when the session may read them), ALTER DATABASE/ROLE ... SET, the connection's options.
    Applications keep secrets there (a JWT key, an API token), and current_setting() reads them."""
    names: set[str] = set()
    if conn.execute("SELECT has_function_privilege('pg_show_all_file_settings()', 'EXECUTE')").fetchone()[0]:
        names.update(r[0] for r in conn.execute("SELECT name FROM pg_file_settings WHERE name LIKE '%.%'"))
    names.update(r[0] for r in conn.execute(
        "SELECT split_part(s, '=', 1) FROM pg_db_role_setting d, unnest(d.setconfig) s "
        "WHERE d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) "
        "AND d.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))"))
    for word in (conn.info.options or "").replace("--", "-c ").split("-c "):
        if "=" in word:
            names.add(word.split("=", 1)[0].strip())
    known = {r[0] for r in conn.execute("SELECT name FROM pg_settings WHERE name LIKE '%.%'")}
    return sorted(n for n in names if "." in n and n not in known)


def hide_custom_settings(conn: psycopg.Connection) -> None:
    """SET LOCAL every custom setting to '' for the rest of the transaction (the generated SQL's)."""
    for name in custom_setting_names(conn):
        conn.execute(sql.SQL("SELECT set_config({}, '', true)").format(sql.Literal(name)))


def describe(conn: psycopg.Connection, text: str) -> list[tuple[str, int]]:
    """(name, type OID) of each column the statement returns, from PostgreSQL's description of it
    (prepared, described and deallocated: nothing is executed)."""
    pgconn = conn.pgconn
    name = f"dbarch_describe_{id(text) & 0xffffff:x}".encode()
    encoding = conn.info.encoding
    result = pgconn.prepare(name, text.encode(encoding))
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        from psycopg import errors

        raise errors.error_from_result(result, encoding=encoding)
    try:
        desc = pgconn.describe_prepared(name)
        return [(desc.fname(i).decode(encoding), desc.ftype(i)) for i in range(desc.nfields)]
    finally:
        pgconn.exec_(b"DEALLOCATE " + name)


def value_capped(conn: psycopg.Connection, text: str, max_value_bytes: int) -> sql.Composed:
    """The statement wrapped so that the server cuts every value longer than max_value_bytes before
    sending it: text-like columns to their first max_value_bytes characters, other variable-length
    ones (bytea, json, arrays, ...) to NULL; a last column counts the values cut in each row."""
    columns = describe(conn, text)
    kinds = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT oid, typcategory = 'S', typlen < 0 FROM pg_type WHERE oid = ANY(%s)", ([t for _, t in columns],))}
    cap = sql.Literal(int(max_value_bytes))
    exprs, cuts = [], []
    for i, (name, oid) in enumerate(columns, 1):
        col = sql.SQL("dbarch_q.{}").format(sql.Identifier(f"c{i}"))
        textual, variable = kinds.get(oid, (False, True))
        too_long = sql.SQL("octet_length({}::text) > {}").format(col, cap)
        if textual:
            exprs.append(sql.SQL("CASE WHEN {} THEN left({}::text, {}) ELSE {} END AS {}").format(
                too_long, col, cap, col, sql.Identifier(name)))
        elif variable:
            exprs.append(sql.SQL("CASE WHEN {} THEN NULL ELSE {} END AS {}").format(too_long, col, sql.Identifier(name)))
        else:
            exprs.append(sql.SQL("{} AS {}").format(col, sql.Identifier(name)))
            continue
        cuts.append(sql.SQL("(CASE WHEN {} THEN 1 ELSE 0 END)").format(too_long))
    aliases = sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(1, len(columns) + 1))) \
        if columns else sql.SQL("")
    count = sql.SQL(" + ").join(cuts) if cuts else sql.SQL("0")
    return (sql.SQL(tag("SELECT ")) + sql.SQL(", ").join([*exprs, sql.SQL("{} AS dbarch_cut").format(count)])
            + sql.SQL(" FROM (\n") + sql.SQL(text) + sql.SQL("\n) AS dbarch_q{}").format(aliases))


@dataclass(frozen=True)
class Caps:
    max_rows: int = 100
    max_value_bytes: int = 64 * 1024        # a longer value is cut, and the answer says so
    max_total_bytes: int = 4 * 1024 * 1024  # fetching stops beyond this
    batch_rows: int = 50


def _size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(str(value))


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore") + "…"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:limit])
    return str(value)[:limit] + "…"


def fetch_capped(cur: psycopg.Cursor, caps: Caps) -> tuple[list[tuple], list[str]]:
    """(rows, notes) from an executed cursor (server-side, so nothing beyond a batch is transferred):
    at most caps.max_rows + 1 rows (the extra one only says there were more), values longer than
    caps.max_value_bytes cut, fetching stopped once caps.max_total_bytes were received."""
    rows: list[tuple] = []
    notes: list[str] = []
    total = 0
    cut_values = 0
    while len(rows) <= caps.max_rows:
        batch = cur.fetchmany(min(caps.batch_rows, caps.max_rows + 1 - len(rows)))
        if not batch:
            break
        for row in batch:
            kept = []
            for value in row:
                size = _size(value)
                total += min(size, caps.max_value_bytes)
                if size > caps.max_value_bytes:
                    cut_values += 1
                    value = _cut(value, caps.max_value_bytes)
                kept.append(value)
            rows.append(tuple(kept))
            if total > caps.max_total_bytes:
                notes.append(f"stopped after {len(rows)} rows: more than {caps.max_total_bytes:,} bytes")
                return rows, notes
    if cut_values:
        notes.append(f"{cut_values} value(s) longer than {caps.max_value_bytes:,} bytes were cut")
    return rows, notes
