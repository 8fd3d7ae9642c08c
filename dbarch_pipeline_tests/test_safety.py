"""Never harm the audited database: experiments are rolled back, bounded by statement and lock
timeouts, statements with irreversible side effects are never executed, and the store keeps what
it had when a write fails. Also the doctests of the pure modules."""

from __future__ import annotations

import doctest
import importlib

import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.audit import unsafe_reason
from dbarch_pipeline.bench.runner import BenchSettings, benchmark_statement
from dbarch_pipeline.db import connect, rolled_back
from dbarch_pipeline.memory import store
from dbarch_pipeline.memory.fingerprint import fingerprint
from dbarch_pipeline.models import IndexCandidate

from .conftest import fresh_database


@pytest.fixture(scope="module")
def db(server):
    url = fresh_database("dbarch_test_safety")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, label text NOT NULL)")
        conn.execute("INSERT INTO items SELECT g, g % 1000, 'item ' || g FROM generate_series(1, 50000) g")
        conn.execute("ANALYZE items")
    return url


def test_experiments_are_rolled_back(db):
    with connect(db, "sandbox") as conn:
        with rolled_back(conn, statement_timeout_ms=5000, lock_timeout_ms=500):
            conn.execute("CREATE INDEX items_label_idx ON items (label)")
            conn.execute("DELETE FROM items")
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 50000
        assert conn.execute("SELECT to_regclass('items_label_idx')").fetchone()[0] is None


def test_statement_timeout_cancels_a_slow_experiment(db):
    with connect(db, "sandbox") as conn:
        with pytest.raises(psycopg.errors.QueryCanceled):
            with rolled_back(conn, statement_timeout_ms=100, lock_timeout_ms=100):
                conn.execute("SELECT pg_sleep(2)")
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_lock_timeout_gives_way_to_the_application(db):
    """A writer holds a lock on the table: the index build gives up instead of queueing behind it
    (and blocking everyone queued after it); the result says why."""
    holder = psycopg.connect(db)
    holder.execute("UPDATE items SET label = label WHERE id = 1")  # open transaction, ROW EXCLUSIVE
    try:
        with connect(db, "sandbox") as conn:
            query = "SELECT * FROM items WHERE owner = $1"
            shape = analyze(query)
            cand = IndexCandidate(schema="public", table="items", columns=("owner",), reason="test")
            results = benchmark_statement(conn, query, shape, [cand], Catalog(conn),
                                          BenchSettings(runs=1, param_sets=1, lock_timeout_ms=200))
    finally:
        holder.rollback()
        holder.close()
    assert results[0]["status"] == "failed"
    assert results[0]["evidence"]["sqlstate"] == "55P03"  # lock_not_available


def test_statements_with_irreversible_effects_are_refused():
    for query, word in [("SELECT pg_sleep($1)", "pg_sleep"), ("SELECT nextval($1)", "nextval"),
                        ("SELECT set_config($1, $2, false)", "set_config")]:
        assert word in unsafe_reason(analyze(query))
    assert "update" in unsafe_reason(analyze("UPDATE t SET a = $1"))
    assert unsafe_reason(analyze("SELECT * FROM t WHERE a = $1")) is None


def test_a_failed_log_write_keeps_what_was_stored(server):
    url = fresh_database("dbarch_test_store_atomic", pg_stat_statements=False)
    with connect(url, "store") as conn:
        store.apply_schema(conn)
        good = {"target": "t", "fingerprint": "f1", "queryid": 1, "query_text": "SELECT 1",
                "recommendation": "r", "kind": "index", "ddl": "CREATE INDEX a ON t (a)",
                "performance_gain": 50.0, "estimated_gain": 40.0, "confidence": 0.9, "evidence": {}}
        assert store.write_optimization_log(conn, [good]) == {"inserted": 1, "updated": 0, "superseded": 0}
        bad = {**good, "fingerprint": "f2", "confidence": 7.0}  # violates the 0..1 check
        with pytest.raises(psycopg.errors.CheckViolation):
            store.write_optimization_log(conn, [{**good, "fingerprint": "f3"}, bad])
        rows = conn.execute("SELECT fingerprint FROM dbarch.optimization_log ORDER BY 1").fetchall()
    assert rows == [("f1",)]


def test_fingerprint_ignores_layout_and_constants():
    a = fingerprint("select id from users where email = 'a@b.c'")
    assert a == fingerprint("SELECT id\n  FROM users WHERE email = $1")
    assert a != fingerprint("SELECT id FROM users WHERE name = $1")


@pytest.mark.parametrize("module", ["dbarch_pipeline.advisor.analyze", "dbarch_pipeline.memory.fingerprint", "dbarch_pipeline.db",
                                    "dbarch_pipeline.advisor.selection",
                                    "dbarch_pipeline.bench.evaluate"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_dbarchs_own_statements_never_appear_in_an_audit(db):
    """Where the role may not switch tracking off, the tag inside each statement still excludes it
    (pg_stat_statements keeps a statement's text from its first token: a leading comment is lost)."""
    from dbarch_pipeline.bench.params import _sample_rows
    from dbarch_pipeline.capture import fetch_slow_queries
    from dbarch_pipeline.models import Thresholds

    with connect(db, "target", quiet_stats=False) as conn:
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")
        for seed in range(6):
            _sample_rows(conn, "public", "items", ["owner"], 50000, 5, seed)
            conn.execute("SELECT count(*) FROM items WHERE owner = %s", (seed,))
        conn.execute("SELECT pg_stat_force_next_flush()")
        found, _ = fetch_slow_queries(conn, Thresholds(min_calls=1, min_mean_ms=0, top_n=100))
    texts = [q.query_text for q in found]
    assert any("WHERE owner = $1" in t for t in texts)
    assert not [t for t in texts if "TABLESAMPLE" in t], texts
