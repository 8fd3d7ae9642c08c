"""The store: dbarch's own tables (snapshots, embeddings, candidates, benchmarks, OptimizationLog).

Every write for one stage of one snapshot replaces that stage's rows in a single transaction, so a
re-run never duplicates; the OptimizationLog is upserted on (target, fingerprint, ddl), and a run
supersedes the proposed rows of the statements it evaluated that it did not choose again, so each
target and statement has one current recommendation (status <> 'superseded'); the rest is history.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Iterable, Sequence

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..db import named
from ..errors import MissingExtension
from ..models import SlowQuery, Thresholds
from .embeddings import MODEL_NAME
from ..settings import SQL_DIR

# An arbitrary constant: serialises concurrent schema application across processes.
SCHEMA_LOCK_KEY = 7_305_201_905


def schema_files() -> list:
    return sorted((SQL_DIR / "schema").glob("*.sql"))


def pending_migrations(conn: psycopg.Connection) -> list:
    """Schema files not yet applied to this store (all of them on a new store)."""
    exists = conn.execute("SELECT to_regclass('dbarch.schema_migrations') IS NOT NULL").fetchone()[0]
    applied = set()
    if exists:
        applied = {r[0] for r in conn.execute("SELECT version FROM dbarch.schema_migrations")}
    return [path for path in schema_files() if path.stem not in applied]


def apply_schema(conn: psycopg.Connection) -> list[str]:
    """Apply the pending sql/schema/*.sql files in order, in one transaction, under an advisory
    lock (two processes starting at once must not race); returns the versions applied."""
    applied: list[str] = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS dbarch")
            conn.execute("CREATE TABLE IF NOT EXISTS dbarch.schema_migrations "
                         "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            for path in pending_migrations(conn):
                conn.execute(path.read_text())
                conn.execute("INSERT INTO dbarch.schema_migrations (version) VALUES (%s)", (path.stem,))
                applied.append(path.stem)
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported):
        raise MissingExtension(
            "the store database has no pgvector extension available",
            "install the pgvector extension on the store server, or leave "
            "--store-dsn / DBARCH_STORE_DSN unset so dbarch stores its memory on the embedded server",
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MissingExtension(
            f"the store user may not create dbarch's schema or the vector extension: {exc}".strip(),
            "run CREATE EXTENSION vector; as a superuser in the store database, and grant the store "
            "user CREATE on it",
        ) from None
    register_vector(conn)
    return applied


def ensure_schema(conn: psycopg.Connection) -> None:
    """Cheap on every connection: one catalog lookup, migrations only when some are pending."""
    if pending_migrations(conn):
        apply_schema(conn)
    else:
        register_vector(conn)


# -- snapshots ---------------------------------------------------------------------------------

def create_snapshot(conn: psycopg.Connection, *, target: str, database: str, captured_at: datetime,
                    stats_reset: datetime | None, thresholds: Thresholds, queries: Sequence[SlowQuery],
                    skipped: dict[str, Any], run_id: str | None, table_writes: dict | None = None,
                    partition_key: str | None = None, window: tuple[datetime, datetime] | None = None,
                    window_seconds: float | None = None, history: dict | None = None) -> int:
    """Store one snapshot and its slow queries in one transaction; returns the snapshot id. A
    partition's earlier snapshot (and everything derived from it) is replaced in the same transaction."""
    if window_seconds is None and stats_reset is not None:
        window_seconds = (captured_at - stats_reset).total_seconds()
    with conn.transaction():
        if partition_key is not None:
            conn.execute(named("delete_partition_snapshot"), {"target": target, "partition_key": partition_key})
        snapshot_id = conn.execute(named("insert_snapshot"), {
            "target": target, "database": database, "captured_at": captured_at,
            "stats_reset": stats_reset, "thresholds": Jsonb(asdict(thresholds)),
            "skipped": Jsonb(skipped), "run_id": run_id, "window_seconds": window_seconds,
            "table_writes": Jsonb(table_writes or {}), "partition_key": partition_key,
            "window_start": window[0] if window else None, "window_end": window[1] if window else None,
            "history": Jsonb(history or {}, dumps=_dumps),
        }).fetchone()[0]
        with conn.cursor().copy(named("copy_slow_query")) as copy:
            for q in queries:
                copy.write_row((snapshot_id, q.queryid, q.fingerprint, q.query_text, q.calls,
                                q.total_exec_ms, q.mean_exec_ms, q.rows, q.shared_blks_hit,
                                q.shared_blks_read, q.captured_at, q.window_seconds))
    return snapshot_id


def latest_snapshot(conn: psycopg.Connection, target: str, partition_key: str | None = None) -> dict | None:
    """The partition's snapshot, or the target's latest when no partition is named."""
    with conn.cursor(row_factory=dict_row) as cur:
        if partition_key is not None:
            return cur.execute(named("select_partition_snapshot"),
                               {"target": target, "partition_key": partition_key}).fetchone()
        return cur.execute(named("select_latest_snapshot"), {"target": target}).fetchone()


def save_report(conn: psycopg.Connection, snapshot_id: int, markdown: str, data: dict) -> None:
    with conn.transaction():
        conn.execute(named("update_snapshot_report"), {"snapshot_id": snapshot_id, "report_md": markdown,
                                                       "report": Jsonb(data, dumps=_dumps)})


def stored_report(conn: psycopg.Connection, target: str, week_start: datetime | None = None) -> dict | None:
    """The week's stored report (the latest reported week when none is named)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_stored_report"), {"target": target, "week_start": week_start}).fetchone()


def previous_snapshot(conn: psycopg.Connection, target: str, window_start: datetime) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_previous_snapshot"),
                           {"target": target, "window_start": window_start}).fetchone()


def snapshot_queries(conn: psycopg.Connection, snapshot_id: int) -> list[SlowQuery]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("select_snapshot_queries"), {"snapshot_id": snapshot_id}).fetchall()
    return [SlowQuery(**row) for row in rows]


# -- embeddings --------------------------------------------------------------------------------

def known_fingerprints(conn: psycopg.Connection, fingerprints: Iterable[str]) -> set[str]:
    rows = conn.execute(named("select_known_fingerprints"), {"fingerprints": list(fingerprints)})
    return {r[0] for r in rows}


def save_embeddings(conn: psycopg.Connection, rows: Sequence[tuple[str, str, str, np.ndarray]]) -> None:
    """rows: (fingerprint, normalized_query, model, vector); binary COPY in one transaction."""
    with conn.transaction():
        with conn.cursor().copy(named("copy_query_embedding")) as copy:
            copy.set_types(["text", "text", "text", "vector"])
            for fingerprint, normalized, model, vector in rows:
                copy.write_row((fingerprint, normalized, model, vector))


def embeddings_for(conn: psycopg.Connection, fingerprints: Iterable[str]) -> dict[str, np.ndarray]:
    rows = conn.execute(named("select_query_embeddings"), {"fingerprints": list(fingerprints)})
    return {fp: _array(vec) for fp, vec in rows}


def similar_optimizations(conn: psycopg.Connection, embedding: np.ndarray, *, limit: int = 5,
                          exclude_fingerprint: str | None = None, history: bool = False,
                          target: str | None = None) -> list[dict]:
    """Nearest past optimizations by cosine distance (HNSW index on the embedding cache, which the
    log joins by fingerprint), those with a realized gain first; current rows only unless `history`."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # keep scanning the graph until enough neighbours have a log row (pgvector 0.8+)
        cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        # never prepared: a generic plan cannot order by the probe's distance through the HNSW index
        # and sorts the whole cache instead (20 ms at 10k rows against 1 ms planned for the vector)
        rows = cur.execute(named("select_similar_optimizations"), {
            "embedding": np.asarray(embedding, dtype=np.float32), "limit": limit,
            "exclude_fingerprint": exclude_fingerprint, "history": history, "target": target,
        }, prepare=False).fetchall()
    for row in rows:
        row["id"] = str(row["id"])
        row["similarity"] = round(float(row["similarity"]), 4)
    return rows


# -- candidates and benchmarks ------------------------------------------------------------------

def replace_candidates(conn: psycopg.Connection, snapshot_id: int, rows: Sequence[dict]) -> None:
    with conn.transaction():
        conn.execute(named("delete_index_candidates"), {"snapshot_id": snapshot_id})
        with conn.cursor() as cur:
            cur.executemany(named("insert_index_candidate"), [
                {**row, "snapshot_id": snapshot_id, "similar": Jsonb(row["similar"], dumps=_dumps),
                 "spec": Jsonb(row["spec"]), "second_opinion": Jsonb(row.get("second_opinion") or {}, dumps=_dumps)}
                for row in rows
            ])


def candidates(conn: psycopg.Connection, snapshot_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_index_candidates"), {"snapshot_id": snapshot_id}).fetchall()


def replace_drop_recommendations(conn: psycopg.Connection, snapshot_id: int, rows: Sequence[dict]) -> None:
    with conn.transaction():
        conn.execute(named("delete_drop_recommendations"), {"snapshot_id": snapshot_id})
        with conn.cursor() as cur:
            cur.executemany(named("insert_drop_recommendation"), [
                {**row, "snapshot_id": snapshot_id, "evidence": Jsonb(row["evidence"], dumps=_dumps)}
                for row in rows
            ])


def drop_recommendations(conn: psycopg.Connection, snapshot_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_drop_recommendations"), {"snapshot_id": snapshot_id}).fetchall()


def replace_benchmarks(conn: psycopg.Connection, snapshot_id: int, rows: Sequence[dict]) -> None:
    with conn.transaction():
        conn.execute(named("delete_benchmarks"), {"snapshot_id": snapshot_id})
        with conn.cursor() as cur:
            cur.executemany(named("insert_benchmark"), [
                {**row, "snapshot_id": snapshot_id, "evidence": Jsonb(row["evidence"], dumps=_dumps)}
                for row in rows
            ])


def benchmarks(conn: psycopg.Connection, snapshot_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_benchmarks"), {"snapshot_id": snapshot_id}).fetchall()


# -- the OptimizationLog ---------------------------------------------------------------------------

STATUSES = ("proposed", "superseded", "applied", "declined", "rejected")
CURRENT = tuple(s for s in STATUSES if s != "superseded")

LOG_COLUMNS = ("target", "fingerprint", "queryid", "query_text", "recommendation", "kind", "ddl",
               "performance_gain", "estimated_gain", "confidence", "embedding", "evidence", "status",
               "snapshot_id")
LOG_TYPES = ["text", "text", "int8", "text", "text", "text", "text", "float8", "float8", "float8",
             "vector", "jsonb", "text", "int8"]


def write_optimization_log(conn: psycopg.Connection, rows: Sequence[dict], *, target: str | None = None,
                           evaluated: Iterable[str] = ()) -> dict[str, int]:
    """Write a run's recommendations in one transaction with one binary COPY: straight into the log
    when none of them is there yet (the usual case), else into a staging table followed by one
    INSERT .. ON CONFLICT, so a re-run updates rows instead of duplicating them. In the same
    transaction, the proposed rows of the `evaluated` statements (fingerprints) of `target` that this
    run did not choose are superseded. Returns how many rows were inserted, updated and superseded."""
    evaluated = sorted(set(evaluated) | {r["fingerprint"] for r in rows})
    keys = {"targets": [r["target"] for r in rows], "fingerprints": [r["fingerprint"] for r in rows],
            "ddls": [r["ddl"] for r in rows]}
    inserted = updated = 0
    with conn.transaction():
        if rows:
            existing = conn.execute(named("select_log_conflicts"), keys).fetchone()[0]
            if existing == 0 and len({(r["target"], r["fingerprint"], r["ddl"]) for r in rows}) == len(rows):
                _copy_log_rows(conn, "copy_optimization_log", rows)
                inserted, updated = len(rows), 0
            else:
                conn.execute(named("create_optimization_staging"))
                _copy_log_rows(conn, "copy_optimization_staging", _last_per_key(rows))
                flags = [r[0] for r in conn.execute(named("upsert_optimization_log")).fetchall()]
                inserted = sum(1 for f in flags if f)
                updated = len(flags) - inserted
            conn.execute(named("insert_missing_embeddings"),
                         {"fingerprints": sorted(set(keys["fingerprints"])), "model": MODEL_NAME})
        target = target or (rows[0]["target"] if rows else None)
        superseded = 0
        if target is not None and evaluated:
            superseded = len(conn.execute(named("supersede_optimization_log"), {
                "target": target, "evaluated": evaluated, "fingerprints": keys["fingerprints"],
                "ddls": keys["ddls"]}).fetchall())
    return {"inserted": inserted, "updated": updated, "superseded": superseded}


def proposed_verdicts(conn: psycopg.Connection, target: str) -> list[dict]:
    """The target's current proposed index rows (fingerprint, ddl): what earlier audits proposed and
    nobody has settled yet."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_previous_verdicts"), {"target": target}).fetchall()


def snapshot_previous_audit(conn: psycopg.Connection, snapshot_id: int) -> dict | None:
    """The previous audit as stored with this snapshot (see audit.previous_audit_summary)."""
    row = conn.execute(named("select_snapshot_previous_audit"), {"snapshot_id": snapshot_id}).fetchone()
    return row[0] if row else None


def _copy_log_rows(conn: psycopg.Connection, statement: str, rows: Sequence[dict]) -> None:
    with conn.cursor().copy(named(statement)) as copy:
        copy.set_types(LOG_TYPES)
        for row in rows:
            values = [row.get(c) for c in LOG_COLUMNS]
            values[LOG_COLUMNS.index("evidence")] = Jsonb(row.get("evidence") or {}, dumps=_dumps)
            values[LOG_COLUMNS.index("status")] = row.get("status") or "proposed"
            copy.write_row(values)


def _last_per_key(rows: Sequence[dict]) -> list[dict]:
    """One row per (target, fingerprint, ddl): ON CONFLICT cannot touch a row twice in one statement."""
    last: dict[tuple, dict] = {}
    for row in rows:
        last[(row["target"], row["fingerprint"], row["ddl"])] = row
    return list(last.values())


def list_optimizations(conn: psycopg.Connection, *, target: str | None = None, limit: int = 50,
                       history: bool = False) -> list[dict]:
    """The log, newest first: current rows only unless `history` (superseded rows too)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("select_optimizations"),
                           {"target": target, "limit": limit, "history": history}).fetchall()
    for row in rows:
        row["id"] = str(row["id"])
    return rows


def decline(conn: psycopg.Connection, optimization_id: str) -> dict | None:
    """Mark a proposed recommendation declined; None when there is no such proposed row."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("decline_optimization"), {"id": optimization_id}).fetchone()


def log_counts(conn: psycopg.Connection, target: str) -> dict[str, int]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("count_optimization_log"), {"target": target}).fetchone()


def realized_gain(conn: psycopg.Connection, target: str) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("select_realized_gain"), {"target": target}).fetchone()


def _array(vec: Any) -> np.ndarray:
    # pgvector's loader returns a Vector (newer releases) or a numpy array (older ones)
    return np.asarray(vec.to_numpy() if hasattr(vec, "to_numpy") else vec, dtype=np.float32)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


# -- what became of the recommendations (the watch sensors) ---------------------------------------

def proposed_optimizations(conn: psycopg.Connection) -> list[dict]:
    """Every proposed row of the log, with its DDL and pull-request state."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("watch_select_proposed_optimizations")).fetchall()
    for row in rows:
        row["id"] = str(row["id"])
    return rows


def mark_applied(conn: psycopg.Connection, ids: Sequence[str], applied_at: datetime) -> list[str]:
    """Move proposed rows to applied; returns the ids that moved."""
    if not ids:
        return []
    with conn.transaction():
        rows = conn.execute(named("watch_mark_applied"), {"ids": list(ids), "applied_at": applied_at}).fetchall()
    return [str(r[0]) for r in rows]


def unrealized_optimizations(conn: psycopg.Connection) -> list[dict]:
    """Applied rows without a realized gain whose target was captured after they were applied."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("watch_select_unrealized_optimizations")).fetchall()
    for row in rows:
        row["id"] = str(row["id"])
    return rows


def record_realized_gain(conn: psycopg.Connection, optimization_id: str, gain_pct: float,
                         realized_at: datetime) -> None:
    with conn.transaction():
        conn.execute(named("watch_update_realized_gain"), {
            "id": optimization_id, "realized_gain": gain_pct, "realized_at": realized_at})
