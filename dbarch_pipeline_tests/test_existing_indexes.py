"""Drop recommendations for existing indexes, against a real database: unused, duplicate and covered
indexes are reported with their evidence; primary keys, unique indexes and the indexes a workload
uses are not; and nothing is ever dropped."""

from __future__ import annotations

import psycopg
import pytest

from dbarch_pipeline.advisor.existing import DropRecommendation, drop_recommendations

from .conftest import fresh_database


@pytest.fixture(scope="module")
def existing_db(server):
    url = fresh_database("dbarch_test_existing")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE t (
                id bigint PRIMARY KEY, code text NOT NULL, u int NOT NULL, x int NOT NULL,
                d int NOT NULL, a int NOT NULL, b int NOT NULL);
            INSERT INTO t SELECT g, 'code-' || g, g % 1000, g % 500, g % 50, g % 100, g % 7
            FROM generate_series(1, 20000) g;
            CREATE UNIQUE INDEX t_code_key ON t (code);
            CREATE INDEX t_code_pattern_idx ON t (code text_pattern_ops);
            CREATE UNIQUE INDEX t_id_key ON t (id);
            CREATE INDEX t_used_idx ON t (u);
            CREATE INDEX t_unused_idx ON t (x);
            CREATE INDEX t_dup_a_idx ON t (d);
            CREATE INDEX t_dup_b_idx ON t (d);
            CREATE INDEX t_a_idx ON t (a);
            CREATE INDEX t_a_b_idx ON t (a, b);
            CREATE SCHEMA "Sales";
            CREATE TABLE "Sales".orders (id int PRIMARY KEY, day date NOT NULL);
            CREATE INDEX "Orders By Day" ON "Sales".orders (day);
            CREATE SCHEMA dbarch;
            CREATE TABLE dbarch.log (id int PRIMARY KEY, note text);
            CREATE INDEX log_note_idx ON dbarch.log (note);
        """)
        conn.execute("VACUUM ANALYZE")
        conn.execute("SET enable_seqscan = off")
        for v in range(5):
            conn.execute("SELECT * FROM t WHERE u = %s", (v,))
            conn.execute("SELECT * FROM t WHERE a = %s AND b = %s", (v, v))
        # statistics are flushed when the session goes idle, at most once a second unless forced
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
    return url


@pytest.fixture(scope="module")
def recommendations(existing_db) -> dict[str, DropRecommendation]:
    with psycopg.connect(existing_db, autocommit=True) as conn:
        found = drop_recommendations(conn)
    assert len({r.index for r in found}) == len(found), "an index was reported twice"
    return {r.index: r for r in found}


def scans(url: str, index: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s",
                            (index,)).fetchone()[0]


def index_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT schemaname, indexname FROM pg_indexes "
                            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        return [f"{s}.{i}" for s, i in rows.fetchall()]


def test_the_workload_was_counted(existing_db):
    assert scans(existing_db, "t_used_idx") > 0
    assert scans(existing_db, "t_a_b_idx") > 0


def test_each_index_gets_its_strongest_kind(recommendations):
    assert {name: r.kind for name, r in recommendations.items()} == {
        "t_id_key": "duplicate",
        "t_dup_b_idx": "duplicate",
        "t_a_idx": "covered",
        "t_unused_idx": "unused",
        # both twins are unused: dropping one for the other does not make the other useful
        "t_dup_a_idx": "unused",
        # not a duplicate of t_code_key: text_pattern_ops serves LIKE 'prefix%'
        "t_code_pattern_idx": "unused",
        "Orders By Day": "unused",
    }


def test_primary_keys_unique_and_used_indexes_are_never_reported(recommendations):
    for name in ("t_pkey", "t_code_key", "t_used_idx", "t_a_b_idx", "orders_pkey"):
        assert name not in recommendations


def test_dbarch_schema_is_left_alone(recommendations):
    assert all(r.schema != "dbarch" for r in recommendations.values())


def test_unused_evidence(recommendations):
    r = recommendations["t_unused_idx"]
    assert r.ddl == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_unused_idx"'
    assert (r.schema, r.table) == ("public", "t")
    assert r.evidence["idx_scan"] == 0 and r.evidence["size_bytes"] == r.size_bytes > 0
    assert r.evidence["table_writes"] == 20000
    assert "stats_reset" in r.evidence and r.evidence["stats_reset"] is None
    assert "replica" in r.evidence["caveat"]
    assert "has not been scanned" in r.reason


def test_identifiers_are_quoted(recommendations):
    assert recommendations["Orders By Day"].ddl == 'DROP INDEX CONCURRENTLY IF EXISTS "Sales"."Orders By Day"'


def test_duplicate_names_the_index_it_duplicates(recommendations):
    r = recommendations["t_dup_b_idx"]
    assert r.ddl == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_dup_b_idx"'
    assert r.evidence["duplicate_of"] == "t_dup_a_idx"
    assert r.evidence["size_bytes"] > 0
    assert "t_dup_a_idx" in r.reason


def test_a_unique_index_duplicating_the_primary_key_goes_and_the_key_stays(recommendations):
    r = recommendations["t_id_key"]
    assert r.evidence["duplicate_of"] == "t_pkey"
    assert r.ddl == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_id_key"'


def test_covered_names_the_covering_index(recommendations):
    r = recommendations["t_a_idx"]
    assert r.ddl == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_a_idx"'
    assert r.evidence["covered_by"] == "t_a_b_idx"
    assert "(a, b)" in r.evidence["covered_by_definition"]
    assert r.evidence["size_bytes"] > 0


def test_sorted_by_size_and_filtered_by_min_size(existing_db):
    with psycopg.connect(existing_db) as conn:
        found = drop_recommendations(conn)
        assert [r.size_bytes for r in found] == sorted((r.size_bytes for r in found), reverse=True)
        smallest = min(r.size_bytes for r in found)
        big = drop_recommendations(conn, min_size_bytes=smallest + 1)
        assert big and all(r.size_bytes > smallest for r in big) and len(big) < len(found)
        assert drop_recommendations(conn, min_size_bytes=1 << 40) == []


def test_nothing_is_ever_dropped(existing_db):
    before = index_names(existing_db)
    with psycopg.connect(existing_db) as conn:
        assert drop_recommendations(conn)
    assert index_names(existing_db) == before
    assert "public.t_unused_idx" in before and "public.t_dup_b_idx" in before
