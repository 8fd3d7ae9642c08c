"""Reading slow statements from pg_stat_statements on the target."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
from psycopg.rows import dict_row

from .db import named, tag
from .errors import MissingExtension
from .memory.fingerprint import fingerprint
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


def fetch_slow_queries(conn: psycopg.Connection, thresholds: Thresholds) -> tuple[list[SlowQuery], dict]:
    """Top statements by total time above the thresholds; returns them and what was skipped."""
    check_pg_stat_statements(conn)
    captured_at = datetime.now(timezone.utc)
    with conn.cursor(row_factory=dict_row) as cur:
        name = "select_slow_queries" if conn.info.server_version >= 170000 else "select_slow_queries_pre17"
        rows = cur.execute(named(name), {
            "min_calls": thresholds.min_calls, "min_mean_ms": thresholds.min_mean_ms,
            # catalog queries are filtered below, so fetch a few more than asked for
            "top_n": thresholds.top_n * 2 + 10,
        }).fetchall()
    queries: list[SlowQuery] = []
    skipped = {"catalog": 0}
    for row in rows:
        if is_catalog_query(row["query"]):
            skipped["catalog"] += 1
            continue
        if len(queries) >= thresholds.top_n:
            break
        queries.append(SlowQuery(
            queryid=row["queryid"], query_text=row["query"], fingerprint=fingerprint(row["query"]),
            calls=row["calls"], total_exec_ms=float(row["total_exec_ms"]),
            mean_exec_ms=float(row["mean_exec_ms"] or 0.0), rows=row["rows"],
            shared_blks_hit=row["shared_blks_hit"], shared_blks_read=row["shared_blks_read"],
            captured_at=captured_at, window_seconds=row["window_seconds"],
        ))
    return queries, skipped


def table_writes(conn: psycopg.Connection) -> dict[str, dict]:
    """Rows inserted, deleted and updated without HOT per table, with the seconds they span."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("select_table_writes")).fetchall()
    return {r["table"]: {"rows": int(r["n_tup_ins"] + r["n_tup_del"] + r["n_tup_upd"] - r["n_tup_hot_upd"]),
                         "seconds": float(r["seconds"] or 0.0)} for r in rows}
