"""Reading slow statements from pg_stat_statements on the target."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .db import named, tag
from .errors import MissingExtension
from .models import SlowQuery, Thresholds

ENABLE_PGSS = (
    "add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart the server, "
    "then run CREATE EXTENSION pg_stat_statements; in the target database "
    "(managed services: enable it in the parameter group / extensions page)"
)

CATALOG_MARKERS = ("pg_catalog.", "information_schema.", "pg_stat_", "pg_class", "pg_namespace",
                   "pg_attribute", "pg_index", "pg_settings", "pg_database", "pg_extension")


def check_pg_stat_statements(conn: psycopg.Connection) -> None:
    """Raise a MissingExtension that says how to enable it when pg_stat_statements is unusable."""
    row = conn.execute(named("select_pgss_installed")).fetchone()
    if row is None:
        raise MissingExtension("pg_stat_statements is not installed in the target database", ENABLE_PGSS)
    try:
        conn.execute(tag("SELECT 1 FROM pg_stat_statements LIMIT 1"))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise MissingExtension(
            "pg_stat_statements is installed but not loaded (it must be in shared_preload_libraries)",
            ENABLE_PGSS,
        ) from None
    except psycopg.errors.InsufficientPrivilege:
        raise MissingExtension(
            "the target user may not read pg_stat_statements",
            "GRANT pg_read_all_stats TO the user in the target DSN",
        ) from None


def stats_reset(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute(named("select_stats_reset")).fetchone()
    return row[0] if row else None


def is_catalog_query(text: str) -> bool:
    """Monitoring tools' catalog queries are not the application's workload."""
    lowered = text.lower()
    return any(marker in lowered for marker in CATALOG_MARKERS)


def read_counters(conn: psycopg.Connection) -> list[dict]:
    """Cumulative counters of the database's plannable statements (dbarch's own aside)."""
    since = sql.SQL("min(s.stats_since)" if conn.info.server_version >= 170000 else "NULL")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_pgss_counters").format(stats_since=since)).fetchall()


def fetch_slow_queries(conn: psycopg.Connection, thresholds: Thresholds) -> tuple[list[SlowQuery], dict]:
    """The statements above the thresholds right now, counted since their statistics started (the
    spike sensor's view; weekly audits use capture differences instead)."""
    from .history import Activity, slow_queries

    check_pg_stat_statements(conn)
    now = datetime.now(timezone.utc)
    statements = {r["queryid"]: {"query_text": r["query"], "calls": r["calls"], "total_exec_ms": r["total_exec_ms"],
                                 "rows": r["rows"], "shared_blks_hit": r["shared_blks_hit"],
                                 "shared_blks_read": r["shared_blks_read"], "first_since": r["stats_since"] or now}
                  for r in read_counters(conn)}
    since = [s["first_since"] for s in statements.values()]
    act = Activity(window_start=min(since, default=now), window_end=now, statements=statements,
                   covered_seconds=max(1.0, (now - min(since, default=now)).total_seconds()))
    return slow_queries(act, thresholds)
