"""The parameter values the application really bound, read from PostgreSQL's own log.

With `log_min_duration_statement` (or `log_min_duration_sample` and `log_statement_sample_rate`)
the server logs each statement's duration, text and, for the extended protocol, its bound values
(`DETAIL: Parameters: $1 = '...'`, each cut at `log_parameter_max_length`). Statements sent with the
simple protocol carry their values as literals, which are lined up with the `$n` of
pg_stat_statements' text. Entries are matched to the week's slow statements by query_id
(`compute_query_id`, in jsonlog and csvlog) or else by fingerprint (memory/fingerprint.py).

The log is read through `pg_ls_logdir()` / `pg_read_binary_file()` where the role may (a superuser, or a
role granted pg_monitor and EXECUTE on pg_read_binary_file), or from files the user points to. Formats:
jsonlog, csvlog and stderr. A bounded, recent sample per statement is kept in the store
(`dbarch.observed_parameters`); values can be personal data, so evidence, reports and pull requests
show "observed" as their source, not the values, unless the user opts in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import psycopg
from psycopg import sql

from ..db import DBARCH_TAG, named, tag
from ..memory.fingerprint import fingerprint
from ..models import SlowQuery

ENV_SWITCH = "DBARCH_OBSERVED_PARAMS"       # off / 0 / false / no: neither collect nor use
ENV_SHOW = "DBARCH_SHOW_OBSERVED_VALUES"    # 1 / on: evidence may show the values themselves
OFF = {"0", "off", "false", "no"}
ON = {"1", "on", "true", "yes"}

MESSAGE = re.compile(r"^(?:duration: (?P<ms>[\d.]+) ms\s+)?(?P<kind>execute|statement)(?: [^:]*)?: (?P<sql>.*)$",
                     re.S)
PARAMETER = re.compile(r"\$(\d+) = (NULL|'((?:[^']|'')*)')")
STDERR_LINE = re.compile(r"^(?P<prefix>.*?)\b(?P<level>LOG|DETAIL|STATEMENT|ERROR|WARNING|FATAL|PANIC|HINT|"
                         r"CONTEXT|NOTICE|INFO|DEBUG\d?):  (?P<text>.*)$")
TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: ?([A-Z]{2,5}|[+-]\d\d(?::?\d\d)?))?")
# csvlog columns (PostgreSQL 14+)
CSV_TIME, CSV_DB, CSV_MESSAGE, CSV_DETAIL, CSV_QUERY_ID = 0, 2, 13, 14, 25


@dataclass(frozen=True)
class ObservedSettings:
    """Collection of observed values: on by default; retention per statement and in days."""

    enabled: bool = True
    keep_per_statement: int = 50
    retention_days: int = 30
    log_files: tuple[str, ...] = ()
    log_dirs: tuple[str, ...] = ()
    max_bytes: int = 64 * 1024 * 1024     # read at most this much log per audit (the newest part)
    show_values: bool = False

    @classmethod
    def from_env(cls, **overrides) -> "ObservedSettings":
        """The settings, with the environment's switches applied (read when called, never at import)."""
        values = dict(overrides)
        if os.environ.get(ENV_SWITCH, "").strip().lower() in OFF:
            values["enabled"] = False
        if os.environ.get(ENV_SHOW, "").strip().lower() in ON:
            values["show_values"] = True
        return cls(**values)


@dataclass(frozen=True)
class LogEntry:
    statement: str
    params: tuple[str | None, ...] | None   # bound values (extended protocol); None: literals in the text
    logged_at: datetime | None = None
    database: str | None = None
    query_id: int | None = None
    duration_ms: float | None = None


# -- parsing ------------------------------------------------------------------------------------------

def _entry(message: str | None, detail: str | None, *, logged_at=None, database=None, query_id=None
           ) -> LogEntry | None:
    if not message:
        return None
    m = MESSAGE.match(message)
    if not m:
        return None
    params = None
    if detail and detail.startswith("Parameters: "):
        found = {int(n): (None if raw == "NULL" else value.replace("''", "'"))
                 for n, raw, value in PARAMETER.findall(detail)}
        if found:
            params = tuple(found.get(i) for i in range(1, max(found) + 1))
    elif m.group("kind") == "execute" and "$1" in m.group("sql"):
        return None     # an execute whose values were not logged
    return LogEntry(statement=m.group("sql").strip(), params=params, logged_at=logged_at, database=database,
                    query_id=query_id or None, duration_ms=float(m.group("ms")) if m.group("ms") else None)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    m = TIMESTAMP.search(text)
    if not m:
        return None
    try:
        moment = datetime.fromisoformat(m.group(1))
    except ValueError:
        return None
    zone = m.group(2) or "UTC"
    if zone[0] in "+-":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        return moment.replace(tzinfo=timezone(sign * offset))
    # a zone abbreviation: UTC/GMT are common for servers; others are read as UTC (ordering only)
    return moment.replace(tzinfo=timezone.utc)


def parse_jsonlog(text: str) -> Iterator[LogEntry]:
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        entry = _entry(rec.get("message"), rec.get("detail"), logged_at=_time(rec.get("timestamp")),
                       database=rec.get("dbname"), query_id=rec.get("query_id"))
        if entry:
            yield entry


def parse_csvlog(text: str) -> Iterator[LogEntry]:
    for rec in csv.reader(io.StringIO(text)):
        if len(rec) <= CSV_DETAIL:
            continue
        query_id = None
        if len(rec) > CSV_QUERY_ID and rec[CSV_QUERY_ID].lstrip("-").isdigit():
            query_id = int(rec[CSV_QUERY_ID])
        entry = _entry(rec[CSV_MESSAGE], rec[CSV_DETAIL], logged_at=_time(rec[CSV_TIME]),
                       database=rec[CSV_DB] or None, query_id=query_id)
        if entry:
            yield entry


def parse_stderr(text: str) -> Iterator[LogEntry]:
    """Plain server logs: `<prefix>LOG:  duration: ... execute ...: SQL`, continuation lines starting
    with a tab, then `<prefix>DETAIL:  Parameters: ...`. The database is not known (prefixes vary)."""
    current: dict | None = None

    def flush():
        if current is not None:
            entry = _entry("\n".join(current["message"]), current["detail"], logged_at=current["at"])
            if entry:
                yield entry

    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            target = current["detail_lines"] if current["detail_lines"] is not None else current["message"]
            target.append(line[1:])
            if current["detail_lines"] is not None:
                current["detail"] = "\n".join(current["detail_lines"])
            continue
        m = STDERR_LINE.match(line)
        if not m:
            continue
        if m.group("level") == "LOG":
            yield from flush()
            current = {"message": [m.group("text")], "detail": None, "detail_lines": None,
                       "at": _time(m.group("prefix"))}
        elif m.group("level") == "DETAIL" and current is not None:
            current["detail_lines"] = [m.group("text")]
            current["detail"] = m.group("text")
    yield from flush()


def parse_log(name: str, text: str) -> Iterator[LogEntry]:
    """Entries of one log file, its format told by its name or its first characters."""
    head = text.lstrip()[:1]
    if name.endswith(".json") or head == "{":
        return parse_jsonlog(text)
    if name.endswith(".csv"):
        return parse_csvlog(text)
    return parse_stderr(text)


# -- literals of simple-protocol statements ----------------------------------------------------------------

def literal_values(normalized: str, logged: str, params: Sequence[str | None] | None = None
                   ) -> tuple[str | None, ...] | None:
    """The values a statement sent as literals, in the order of pg_stat_statements' `$n`: the two
    texts are tokenized and walked together; None when they do not line up. With the values bound
    to the logged statement's own `$k` (`params`), a `$n` that stands for one of them takes its value,
    so a statement holding both (`substr(code, 1, 8) = $1`) is lined up whole."""
    values = _line_up(normalized, logged, params, partial=False)
    if values is None or not values or sorted(values) != list(range(1, max(values) + 1)):
        return None
    return tuple(values[n] for n in range(1, max(values) + 1))


def literal_constants(normalized: str, text: str) -> dict[int, str | None] | None:
    """The `$n` of pg_stat_statements' text lined up with `text` (the statement as the client sent
    it, its bound parameters still `$k`, as pg_stat_activity shows it): the value of each `$n` that
    stands for a literal, None for each that stands for a bound `$k` (its value is not in the text).
    A list pg_stat_statements squashed (`IN ($3 /*, ... */)`) is left out. None when the texts do not
    line up.

    >>> literal_constants("SELECT id FROM t WHERE substr(code, $2, $3) = $1",
    ...                   "SELECT id FROM t WHERE substr(code, 1, 8) = $1")
    {2: '1', 3: '8', 1: None}
    """
    return _line_up(normalized, text, None, partial=True)


def _line_up(normalized: str, logged: str, params: Sequence[str | None] | None, *, partial: bool
             ) -> dict[int, str | None] | None:
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import TokenType

    try:
        norm = Postgres().tokenize(normalized)
        seen = Postgres().tokenize(logged)
    except SqlglotError:
        return None
    values: dict[int, str | None] = {}
    i = j = 0
    while i < len(norm):
        tok = norm[i]
        if tok.token_type == TokenType.PARAMETER and i + 1 < len(norm) and norm[i + 1].token_type == TokenType.NUMBER:
            n = int(norm[i + 1].text)
            squashed = any(", ..." in c for c in norm[i + 1].comments)
            sign = ""
            if j < len(seen) and seen[j].token_type in (TokenType.DASH, TokenType.PLUS):
                sign = "-" if seen[j].token_type == TokenType.DASH else ""
                j += 1
            if (params is not None and j + 1 < len(seen) and seen[j].token_type == TokenType.PARAMETER
                    and seen[j + 1].token_type == TokenType.NUMBER and not sign
                    and 1 <= int(seen[j + 1].text) <= len(params)):
                values[n] = params[int(seen[j + 1].text) - 1]
                j += 2
                i += 2
                continue
            if (partial and j + 1 < len(seen) and seen[j].token_type == TokenType.PARAMETER
                    and seen[j + 1].token_type == TokenType.NUMBER and not sign):
                values[n] = None    # a bound parameter: its value is not in the text
                j += 2
                i += 2
                continue
            if j >= len(seen) or seen[j].token_type not in (TokenType.STRING, TokenType.NUMBER, TokenType.NATIONAL_STRING,
                                                            TokenType.BIT_STRING, TokenType.HEX_STRING, TokenType.TRUE,
                                                            TokenType.FALSE):
                return None
            values[n] = sign + seen[j].text
            j += 1
            if squashed:   # IN ($3 /*, ... */): the first item stands for the list
                while j < len(seen) and seen[j].token_type != TokenType.R_PAREN:
                    j += 1
                if partial:
                    del values[n]   # no single constant
            i += 2
            continue
        if j >= len(seen) or tok.token_type != seen[j].token_type or tok.text.lower() != seen[j].text.lower():
            return None
        i += 1
        j += 1
    return values if j == len(seen) else None


# -- reading the log ----------------------------------------------------------------------------------------

@dataclass
class Read:
    """Log text read for one collection, with what could not be read and why."""

    files: list[tuple[str, str]] = field(default_factory=list)   # (name, text)
    notes: list[str] = field(default_factory=list)
    bytes: int = 0


def read_local(paths: Sequence[str], dirs: Sequence[str], *, max_bytes: int, since: datetime | None) -> Read:
    """The newest part of log files on this machine (`--log-file`, `--log-dir`)."""
    out = Read()
    candidates: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            out.notes.append(f"log file {p} does not exist or is not a file")
            continue
        candidates.append(path)
    for d in dirs:
        folder = Path(d)
        if not folder.is_dir():
            out.notes.append(f"log folder {d} does not exist")
            continue
        candidates += [f for f in folder.iterdir() if f.is_file() and f.suffix in (".json", ".csv", ".log")]
    candidates.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    for f in candidates:
        stat = f.stat()
        if since and datetime.fromtimestamp(stat.st_mtime, timezone.utc) < since:
            continue
        budget = max_bytes - out.bytes
        if budget <= 0:
            out.notes.append(f"stopped reading at {max_bytes:,} bytes of log (the newest part is read)")
            break
        try:
            with f.open("rb") as fh:
                offset = max(0, stat.st_size - budget)
                fh.seek(offset)
                data = fh.read(budget)
        except OSError as exc:
            out.notes.append(f"cannot read {f}: {exc.strerror or exc}")
            continue
        out.files.append((f.name, _whole_lines(data, offset > 0)))
        out.bytes += len(data)
    return out


def read_server(conn: psycopg.Connection, *, max_bytes: int, since: datetime | None) -> Read:
    """The newest part of the server's own log files, through pg_ls_logdir() and pg_read_binary_file()."""
    out = Read()
    try:
        with conn.transaction():
            folder = conn.execute(tag("SELECT current_setting('log_directory')")).fetchone()[0]
            files = conn.execute(named("select_log_files")).fetchall()
    except psycopg.Error as exc:
        out.notes.append(f"the server's log cannot be listed ({_first_line(exc)}): grant the role pg_monitor "
                         "and EXECUTE on pg_read_binary_file, or pass --log-dir / --log-file")
        return out
    for name, size, modified in files:
        if since and modified < since:
            continue
        budget = max_bytes - out.bytes
        if budget <= 0:
            out.notes.append(f"stopped reading at {max_bytes:,} bytes of log (the newest part is read)")
            break
        offset = max(0, size - budget)
        try:
            with conn.transaction():
                data = conn.execute(named("select_log_file_part"),
                                    {"path": f"{folder}/{name}", "offset": offset, "length": budget}).fetchone()[0]
        except psycopg.Error as exc:
            out.notes.append(f"the server's log file {name} cannot be read ({_first_line(exc)}): grant the role "
                             "EXECUTE on pg_read_binary_file(text, bigint, bigint), or pass --log-dir / --log-file")
            break
        out.files.append((name, _whole_lines(data, offset > 0)))
        out.bytes += len(data)
    return out


def _embedded_log_dir(conn: psycopg.Connection) -> Path | None:
    """The log folder of the embedded server when `conn` is connected to it."""
    from .. import embedded

    info = conn.info
    if info.host not in ("127.0.0.1", "localhost") or int(info.port) != embedded.port():
        return None
    folder = embedded.data_dir() / "log"
    return folder if folder.is_dir() else None


def database_created_at(conn: psycopg.Connection) -> datetime | None:
    """When the target database was created, from its folder's PG_VERSION file (CREATE DATABASE
    writes it once). Log lines name a database by name, not by OID, and PostgreSQL 18 computes the
    same query_id for the same statement on recreated tables, so entries logged before this moment
    belong to an earlier database of the same name and are not the current application's values.
    The embedded server's file is read directly (the file system's precision); pg_stat_file (a
    superuser or a GRANT) gives whole seconds, so its time is moved to the end of that second: the
    first second's entries are left out rather than an earlier database's. None when neither tells."""
    try:
        with conn.transaction():
            oid, default_space = conn.execute(named("select_database_created")).fetchone()
    except psycopg.Error:
        return None
    if not default_space:
        return None          # a database in another tablespace keeps its folder elsewhere
    path = f"base/{oid}/PG_VERSION"
    if _embedded_log_dir(conn) is not None:
        from .. import embedded

        try:
            return datetime.fromtimestamp((embedded.data_dir() / path).stat().st_mtime, timezone.utc)
        except OSError:
            pass
    try:
        with conn.transaction():
            row = conn.execute(named("select_database_version_file"), {"path": path}).fetchone()
    except psycopg.Error:
        return None
    return row[0] + timedelta(seconds=1) if row and row[0] is not None else None


def _whole_lines(data: bytes, cut: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    if cut and "\n" in text:
        text = text.split("\n", 1)[1]    # the first line was cut by the offset
    return text


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def server_logging_note(conn: psycopg.Connection) -> str | None:
    """A note when the server logs no statement durations (so no values can be observed)."""
    try:
        with conn.transaction():
            row = conn.execute(tag("SELECT current_setting('log_min_duration_statement'), "
                                   "current_setting('log_min_duration_sample'), "
                                   "current_setting('log_statement')")).fetchone()
    except psycopg.Error:
        return None
    if row[0] == "-1" and row[1] == "-1" and row[2] != "all":
        return ("the server logs no statement durations, so no parameter values can be observed: set "
                "log_min_duration_statement (or log_min_duration_sample with log_statement_sample_rate)")
    return None


# -- matching and keeping ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    fingerprint: str
    queryid: int
    logged_at: datetime
    duration_ms: float | None
    values: tuple[str | None, ...]


def match(entries: Iterable[LogEntry], queries: Sequence[SlowQuery], *, database: str | None,
          now: datetime | None = None, not_before: datetime | None = None) -> list[Observation]:
    """Observations of the slow statements: by query_id, else by fingerprint; dbarch's own
    statements and other databases' are left out, and so are entries logged before `not_before`
    (the database's creation: an earlier database of the same name); values truncated by the
    server are dropped."""
    now = now or datetime.now(timezone.utc)
    by_id = {q.queryid: q for q in queries}
    by_fp = {q.fingerprint: q for q in queries}
    counts = {q.queryid: _param_count(q.query_text) for q in queries}
    fps: dict[str, str] = {}
    out = []
    for e in entries:
        if database and e.database and e.database != database:
            continue
        if not_before and e.logged_at and e.logged_at < not_before:
            continue
        if DBARCH_TAG in e.statement or e.statement.lstrip()[:7].upper() == "EXPLAIN":
            continue
        q = by_id.get(e.query_id) if e.query_id else None
        if q is None:
            fp = fps.get(e.statement)
            if fp is None:
                fp = fps[e.statement] = fingerprint(e.statement)
            q = by_fp.get(fp)
        if q is None or counts[q.queryid] == 0:
            continue
        values = e.params if e.params is not None else literal_values(q.query_text, e.statement)
        if e.params is not None and len(e.params) != counts[q.queryid]:
            # bound values and literals together: pg_stat_statements numbered the literals after them
            values = literal_values(q.query_text, e.statement, e.params)
        if values is None or len(values) != counts[q.queryid]:
            continue
        if any(v is not None and v.endswith("...") for v in values):
            continue   # cut at log_parameter_max_length
        out.append(Observation(q.fingerprint, q.queryid, e.logged_at or now, e.duration_ms, tuple(values)))
    return out


def _param_count(query: str) -> int:
    found = [int(n) for n in re.findall(r"\$(\d+)", query)]
    return max(found, default=0)


def save(store_conn: psycopg.Connection, target: str, observations: Sequence[Observation],
         settings: ObservedSettings, source: str) -> int:
    """Keep the observations (duplicates ignored), then apply the retention: the newest
    keep_per_statement per statement, none older than retention_days."""
    rows = [{"target": target, "fingerprint": o.fingerprint, "queryid": o.queryid, "logged_at": o.logged_at,
             "duration_ms": o.duration_ms, "values_hash": _hash(o.values), "params": list(o.values),
             "source": source} for o in observations]
    with store_conn.transaction():
        with store_conn.cursor() as cur:
            if rows:
                cur.executemany(named("insert_observed_parameters"), rows)
        store_conn.execute(named("delete_observed_parameters_beyond_retention"),
                           {"target": target, "keep": settings.keep_per_statement,
                            "days": settings.retention_days})
    return len(rows)


def _hash(values: Sequence[str | None]) -> str:
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:24]


def load(store_conn: psycopg.Connection, target: str, fingerprints: Iterable[str],
         settings: ObservedSettings) -> dict[str, list[tuple[str | None, ...]]]:
    """The kept observations per fingerprint, newest first ({} when collection is off)."""
    if not settings.enabled:
        return {}
    out: dict[str, list[tuple[str | None, ...]]] = {}
    rows = store_conn.execute(named("select_observed_parameters"),
                              {"target": target, "fingerprints": sorted(set(fingerprints)),
                               "days": settings.retention_days}).fetchall()
    for fp, params in rows:
        out.setdefault(fp, []).append(tuple(params))
    return out


def collect(target_conn: psycopg.Connection | None, store_conn: psycopg.Connection, *, target: str,
            database: str | None, queries: Sequence[SlowQuery], settings: ObservedSettings,
            now: datetime | None = None) -> dict:
    """Read the log (the user's files when given, else the server's), keep the values bound to the
    slow statements, and say what was found; never raises for an unreadable log."""
    if not settings.enabled:
        return {"observed_params": "off"}
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=settings.retention_days)
    notes: list[str] = []
    if settings.log_files or settings.log_dirs:
        read = read_local(settings.log_files, settings.log_dirs, max_bytes=settings.max_bytes, since=since)
        source = "files"
    elif target_conn is not None:
        read = read_server(target_conn, max_bytes=settings.max_bytes, since=since)
        source = "server log"
        local = _embedded_log_dir(target_conn)
        if not read.files and local is not None:
            # dbarch's own server, reached through a role that may not read its log: the files are ours
            read = read_local([], [str(local)], max_bytes=settings.max_bytes, since=since)
            source = "embedded server log"
        note = server_logging_note(target_conn)
        if note:
            notes.append(note)
    else:
        return {"observed_params": "no log to read (the target is unreachable and no --log-dir was given)"}
    notes += read.notes
    created = database_created_at(target_conn) if target_conn is not None else None
    entries = (e for name, text in read.files for e in parse_log(name, text))
    found = match(entries, queries, database=database, now=now, not_before=created)
    try:
        kept = save(store_conn, target, found, settings, source)
    except psycopg.Error as exc:
        return {"observed_params": f"not kept: {_first_line(exc)}", "observed_notes": notes}
    return {"observed_params": source, "observed_log_files": len(read.files), "observed_log_bytes": read.bytes,
            "observed_values": kept, "observed_statements": len({o.fingerprint for o in found}),
            "observed_not_before": created.isoformat() if created else None,
            "observed_notes": notes}


def forget(store_conn: psycopg.Connection, target: str | None = None) -> int:
    """Delete the kept values (of one target, or all)."""
    cur = store_conn.execute(sql.SQL(tag("DELETE FROM dbarch.observed_parameters WHERE {}")).format(
        sql.SQL("target = %(target)s") if target else sql.SQL("true")), {"target": target})
    return cur.rowcount


# -- command line ------------------------------------------------------------------------------------------

def add_cli_flags(p) -> None:
    """The observed-values flags of `dbarch audit` and `dbarch demo`."""
    p.add_argument("--no-observed-params", action="store_true",
                   help="neither read the server log for bound parameter values nor use stored ones "
                        f"(also {ENV_SWITCH}=off)")
    p.add_argument("--log-file", action="append", metavar="PATH",
                   help="read bound parameter values from this server log file (jsonlog, csvlog or stderr); "
                        "repeatable")
    p.add_argument("--log-dir", action="append", metavar="DIR",
                   help="read bound parameter values from the log files in this folder; repeatable")
    p.add_argument("--observed-keep", type=int, metavar="N",
                   help="observed parameter sets kept per statement (default 50)")
    p.add_argument("--observed-days", type=int, metavar="DAYS",
                   help="days observed parameter values are kept (default 30)")
    p.add_argument("--show-observed-values", action="store_true",
                   help="show observed values in evidence and pull requests (they may be personal data; "
                        f"default: shown as \"observed\"; also {ENV_SHOW}=1)")


def cli_settings(args) -> dict:
    """AuditSettingsResource fields from the flags; a missing log file or folder is an error to fix."""
    from ..errors import DbarchError

    out: dict = {}
    if getattr(args, "no_observed_params", False):
        out["observed_params"] = False
    for flag, key, check in (("log_file", "log_files", os.path.isfile), ("log_dir", "log_dirs", os.path.isdir)):
        paths = getattr(args, flag, None) or []
        for path in paths:
            if not check(path):
                raise DbarchError(f"--{flag.replace('_', '-')} {path}: no such {'file' if flag == 'log_file' else 'folder'}",
                                  "point it at the server's log (log_directory under the data folder, or where "
                                  "your logging collector writes)")
        if paths:
            out[key] = [os.path.abspath(p) for p in paths]
    for flag, key in (("observed_keep", "observed_keep"), ("observed_days", "observed_days")):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise DbarchError(f"--{flag.replace('_', '-')} must be at least 1 (got {value})",
                                  "use --no-observed-params to switch the collection off")
            out[key] = value
    if getattr(args, "show_observed_values", False):
        out["show_observed_values"] = True
    return out
