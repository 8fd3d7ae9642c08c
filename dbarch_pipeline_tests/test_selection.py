"""Workload-wide selection: one index serving several statements beats several, the storage budget
and index count are respected, a regression counts against an index, and on a write-heavy table a
marginal index is declined (measured end to end on the embedded PostgreSQL)."""

from __future__ import annotations

import psycopg

from dbarch_pipeline import demo
from dbarch_pipeline.advisor.selection import select_indexes
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database


def bench(qid: int, ddl: str, before: float, after: float, *, size: int = 1000, write_ms: float = 0.0,
          regression: bool = False, table: str = "t") -> dict:
    return {"queryid": qid, "ddl": ddl, "status": "measured", "ms_before": before, "ms_after": after,
            "measured_gain_pct": 100 * (before - after) / before, "estimated_gain_pct": 50.0,
            "confidence": 0.9, "cost_after": 1.0,
            "evidence": {"index_used": True, "index_bytes": size, "write_ms_per_row": write_ms,
                         "regression": regression, "spec": {"schema": "public", "table": table}}}


def test_one_index_serving_two_statements_beats_two_narrow_ones():
    rows = [bench(1, "AB", 10, 1.2), bench(2, "AB", 10, 1.3),
            bench(1, "A", 10, 1.0), bench(2, "B", 10, 1.0)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10)
    assert [c.ddl for c in sel.chosen] == ["AB"]
    assert {q: r["ddl"] for q, r in sel.assignment.items()} == {1: "AB", 2: "AB"}
    assert "already serves" in sel.declined["A"]


def test_storage_budget_and_index_count():
    rows = [bench(1, "big", 10, 1, size=10_000), bench(2, "small", 10, 2, size=100)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10, storage_budget_bytes=5_000)
    assert [c.ddl for c in sel.chosen] == ["small"] and "storage budget" in sel.declined["big"]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10, max_indexes=1)
    assert [c.ddl for c in sel.chosen] == ["big"]


def test_a_regression_counts_against_the_index():
    rows = [bench(1, "X", 10, 8), bench(2, "X", 10, 30, regression=True)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10)
    assert sel.chosen == [] and sel.declined["X"] == "makes another statement slower"


def test_upkeep_weighed_against_reads():
    rows = [bench(1, "X", 10, 5, write_ms=0.01)]
    writes = {"public.t": {"rows": 10_000, "seconds": 1.0}}   # 100 ms/s of upkeep
    sel = select_indexes(rows, {1: 1.0}, table_writes=writes, min_gain_pct=10)   # 5 ms/s of reads
    assert sel.chosen == [] and "outweighs the read benefit" in sel.declined["X"]
    sel = select_indexes(rows, {1: 100.0}, table_writes=writes, min_gain_pct=10)  # 500 ms/s of reads
    assert [c.ddl for c in sel.chosen] == ["X"]


def _audit(url: str, store: str) -> dict:
    result = materialize_audit(audit_resources(target_dsn=url, store_dsn=store,
                                               settings={**FAST_SETTINGS, "min_mean_ms": 0.2}))
    return result.asset_materializations_for_node("optimization_log")[0].metadata["summary"].value


def _events_db(name: str) -> str:
    url = fresh_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "device int NOT NULL, payload text NOT NULL)")
        conn.execute("INSERT INTO events (device, payload) SELECT g % 5000, repeat('x', 40) "
                     "FROM generate_series(1, 40000) g")
        conn.execute("VACUUM ANALYZE events")
        demo.reset_statistics(conn)
    return url


def test_write_heavy_table_declines_a_marginal_index(server, store_dsn):
    quiet = _events_db("dbarch_test_reads")
    busy = _events_db("dbarch_test_writes")
    for url in (quiet, busy):
        with psycopg.connect(url, autocommit=True) as conn:
            for device in range(5):
                conn.execute("SELECT count(*) FROM events WHERE device = %s", (device,))
    with psycopg.connect(busy, autocommit=True) as conn:
        # a firehose of writes on the same table: 300,000 rows in a few seconds
        for _ in range(6):
            conn.execute("INSERT INTO events (device, payload) SELECT g % 5000, 'y' FROM generate_series(1, 50000) g")
            conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id DESC LIMIT 50000)")
        conn.execute("VACUUM ANALYZE events")
        conn.execute("SELECT pg_stat_force_next_flush()")
    assert _audit(quiet, store_dsn)["indexes_recommended"] == 1
    busy_meta = _audit(busy, store_dsn)
    assert busy_meta["indexes_recommended"] == 0 and busy_meta["declined"] >= 1
