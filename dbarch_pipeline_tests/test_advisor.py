"""The deterministic advisor, in the style of Dexter's tests: a real database, a statement, the
index expected (or none). Also the pure parts: sqlglot analysis and candidate ordering."""

from __future__ import annotations

import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import UnparseableQuery, analyze
from dbarch_pipeline.advisor.candidates import candidates_for
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.audit import AuditSettings, recommend_statement
from dbarch_pipeline.bench.runner import BenchSettings

from .conftest import fresh_database

SETTINGS = AuditSettings(bench=BenchSettings(runs=3, param_sets=3))


@pytest.fixture(scope="module")
def advisor_db(server):
    url = fresh_database("dbarch_test_advisor")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE posts (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                user_id int NOT NULL, blog_id int NOT NULL, status text NOT NULL,
                title text NOT NULL, created_at timestamptz NOT NULL, meta jsonb NOT NULL, tags text[] NOT NULL,
                slug text COLLATE "C.utf8" NOT NULL);
            INSERT INTO posts (user_id, blog_id, status, title, created_at, meta, tags, slug)
            SELECT g % 5000, g % 50, CASE WHEN g % 100 = 0 THEN 'draft' ELSE 'published' END,
                   'post ' || g, timestamptz '2026-01-01' + make_interval(mins => g),
                   jsonb_build_object('lang', (ARRAY['en', 'vi', 'fr', 'de', 'ja'])[1 + g % 5], 'n', g % 997),
                   ARRAY['t' || (g % 400), 't' || (g % 13)], md5(g::text)
            FROM generate_series(1, 120000) g;
            CREATE TABLE blogs (id int PRIMARY KEY, name text NOT NULL, owner_email text NOT NULL);
            INSERT INTO blogs SELECT g, 'blog ' || g, 'Owner' || g || '@Example.com' FROM generate_series(1, 50) g;
            CREATE TABLE authors (id int PRIMARY KEY, email text NOT NULL, handle text NOT NULL);
            INSERT INTO authors SELECT g, 'Author' || g || '@Example.com', md5(g::text) FROM generate_series(1, 60000) g;
            CREATE TABLE comments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, post_id bigint NOT NULL,
                                   body text NOT NULL);
            INSERT INTO comments (post_id, body) SELECT 1 + g % 120000, 'c' || g FROM generate_series(1, 200000) g;
            CREATE INDEX posts_blog_id_idx ON posts (blog_id);
            CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL);
            INSERT INTO orders SELECT g, g % 20000 FROM generate_series(1, 100000) g;
            CREATE INDEX orders_customer_id_idx ON orders (customer_id);
            CREATE TABLE order_items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                      order_id int NOT NULL, sku text NOT NULL);
            INSERT INTO order_items (order_id, sku) SELECT 1 + g % 100000, 'sku' || (g % 777)
            FROM generate_series(1, 300000) g;
        """)
        conn.execute("VACUUM ANALYZE")
    return url


def assert_recommends(url: str, query: str, expected: str | None, *, mean_rows: float | None = None
                      ) -> dict | None:
    with psycopg.connect(url, autocommit=True) as conn:
        best = recommend_statement(conn, query, SETTINGS, mean_rows=mean_rows)
    got = best["evidence"]["index"] if best else None
    assert got == expected, f"{query}\n expected {expected}, got {got}"
    if best:
        assert best["measured_gain_pct"] > 0 and best["confidence"] > 0
    return best


def test_equality_lookup(advisor_db):
    assert_recommends(advisor_db, "SELECT * FROM posts WHERE user_id = $1", "public.posts (user_id)")


def test_equality_then_order_by_for_limit(advisor_db):
    # blog_id is indexed, but 2,400 posts per blog must then be sorted for each page
    assert_recommends(advisor_db, "SELECT * FROM posts WHERE blog_id = $1 ORDER BY created_at DESC LIMIT $2",
                      "public.posts (blog_id, created_at)")


def test_range_predicate(advisor_db):
    assert_recommends(advisor_db, "SELECT count(*) FROM posts WHERE created_at >= $1 AND created_at < $2",
                      "public.posts (created_at)")


def test_expression_predicate(advisor_db):
    assert_recommends(advisor_db, "SELECT id FROM authors WHERE lower(email) = lower($1)",
                      "public.authors (lower(email))")


def test_like_prefix_under_the_c_collation_uses_a_plain_btree(advisor_db):
    assert_recommends(advisor_db, "SELECT * FROM authors WHERE handle LIKE $1", "public.authors (handle)")


def test_like_prefix_under_a_linguistic_collation_needs_text_pattern_ops(advisor_db):
    assert_recommends(advisor_db, "SELECT * FROM posts WHERE slug LIKE $1",
                      "public.posts (slug text_pattern_ops)")


def test_jsonb_containment_gets_gin_jsonb_path_ops(advisor_db):
    assert_recommends(advisor_db, "SELECT id FROM posts WHERE meta @> $1",
                      "public.posts USING gin (meta jsonb_path_ops)")


def test_jsonb_key_existence_gets_default_gin(advisor_db):
    with psycopg.connect(advisor_db) as conn:
        cands, _ = candidates_for(analyze("SELECT id FROM posts WHERE meta ? $1"), Catalog(conn))
    assert [c.label() for c in cands] == ["public.posts USING gin (meta)"]


def test_array_overlap_gets_gin(advisor_db):
    assert_recommends(advisor_db, "SELECT count(*) FROM posts WHERE tags && $1", "public.posts USING gin (tags)")


def test_rare_value_asked_for_gets_a_partial_index(advisor_db):
    # 1,200 rows per call out of 120,000: the workload asks for the 1% 'draft' posts
    best = assert_recommends(advisor_db, "SELECT * FROM posts WHERE status = $1",
                             "public.posts (status) WHERE status = 'draft'", mean_rows=1200)
    assert all(p[0] == "draft" for p in best["evidence"]["parameter_sets"])


def test_common_value_gets_no_partial_index(advisor_db):
    with psycopg.connect(advisor_db) as conn:
        cands, _ = candidates_for(analyze("SELECT * FROM posts WHERE status = $1"), Catalog(conn),
                                  mean_rows=118_000)
    assert not [c for c in cands if c.where]


def test_include_columns_for_an_index_only_scan(advisor_db):
    assert_recommends(advisor_db, "SELECT title FROM posts WHERE user_id = $1",
                      "public.posts (user_id) INCLUDE (title)")


def test_join_key_on_the_inner_side(advisor_db):
    # orders are found by their index; a nested loop into order_items then beats hashing all items
    assert_recommends(advisor_db, "SELECT i.sku FROM orders o JOIN order_items i ON i.order_id = o.id "
                                  "WHERE o.customer_id = $1", "public.order_items (order_id)")
    with psycopg.connect(advisor_db, autocommit=True) as conn:
        shape = analyze("SELECT c.body FROM posts p JOIN comments c ON c.post_id = p.id WHERE p.user_id = $1")
        cands, _ = candidates_for(shape, Catalog(conn))
    assert {"public.posts (user_id)", "public.comments (post_id)"} <= {c.label() for c in cands}


def test_primary_key_lookup_needs_nothing(advisor_db):
    assert_recommends(advisor_db, "SELECT * FROM posts WHERE id = $1", None)


def test_covered_by_an_existing_index(advisor_db):
    assert_recommends(advisor_db, "SELECT count(*) FROM posts WHERE blog_id = $1", None)


def test_tiny_table_is_skipped(advisor_db):
    assert_recommends(advisor_db, "SELECT * FROM blogs WHERE owner_email = $1", None)
    with psycopg.connect(advisor_db) as conn:
        _, skips = candidates_for(analyze("SELECT * FROM blogs WHERE owner_email = $1"), Catalog(conn))
    assert "too small" in skips[0].reason


def test_full_table_aggregate_needs_nothing(advisor_db):
    assert_recommends(advisor_db, "SELECT status, count(*) FROM posts GROUP BY status", None)


def test_equality_columns_most_selective_first(advisor_db):
    with psycopg.connect(advisor_db) as conn:
        shape = analyze("SELECT * FROM posts WHERE status = $1 AND user_id = $2")
        cands, _ = candidates_for(shape, Catalog(conn))
    assert cands[0].columns == ("user_id", "status")


def test_writes_are_never_executed(advisor_db):
    with psycopg.connect(advisor_db, autocommit=True) as conn:
        assert recommend_statement(conn, "DELETE FROM posts WHERE user_id = $1", SETTINGS) is None
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 120000


def test_analysis_of_a_join_with_aliases():
    shape = analyze("SELECT l.title FROM user_progress p JOIN lessons l ON l.id = p.lesson_id "
                    "WHERE p.user_id = $1 AND p.updated_at > $2 ORDER BY p.updated_at LIMIT 10")
    assert shape.tables == ["user_progress", "lessons"]
    assert [(p.table, p.column, p.op, p.param) for p in shape.predicates] == [
        ("user_progress", "user_id", "eq", 1), ("user_progress", "updated_at", "range", 2)]
    assert shape.joins[0].left_table == "lessons" and shape.joins[0].right_column == "lesson_id"
    assert shape.order_by == [("user_progress", "updated_at")] and shape.has_limit


def test_in_lists_between_and_like():
    shape = analyze("SELECT * FROM t WHERE a IN ($1, $2) AND b BETWEEN $3 AND $4 AND c LIKE $5")
    assert [(p.column, p.op, p.params) for p in shape.predicates] == [
        ("a", "in", (1, 2)), ("b", "range", (3, 4)), ("c", "like", (5,))]


def test_unparseable_statement_raises_a_named_error():
    with pytest.raises(UnparseableQuery, match="sqlglot cannot parse"):
        analyze("SELECT id FROM users ORDER BY created_at USING <")
    with pytest.raises(UnparseableQuery, match="one statement"):
        analyze("SELECT 1; SELECT 2")


def test_data_modifying_cte_is_not_read_only():
    assert analyze("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").kind == "other"


def test_constants_turned_into_parameters_get_neutral_values_and_are_timed(advisor_db):
    # pg_stat_statements writes `SELECT 2 * count(*)` as `SELECT $1 * count(*)`: $1 is no column's
    best = assert_recommends(advisor_db, "SELECT $1 * count(*) FROM posts WHERE user_id = $2",
                             "public.posts (user_id)")
    assert best["ms_before"] is not None and best["evidence"]["unmapped_parameters"] == [1]


def test_one_index_is_proposed_once_whatever_the_reasons(advisor_db):
    with psycopg.connect(advisor_db) as conn:
        shape = analyze("SELECT status, count(*) FROM posts WHERE status IN ($1, $2) GROUP BY status")
        cands, _ = candidates_for(shape, Catalog(conn))
    ddls = [c.label() for c in cands]
    assert len(ddls) == len(set(ddls))


def test_a_statement_measured_many_times_stays_measurable(advisor_db):
    """psycopg prepares a statement after five runs; EXPLAIN must never be prepared."""
    with psycopg.connect(advisor_db, autocommit=True) as conn:
        for _ in range(7):
            assert recommend_statement(conn, "SELECT * FROM posts WHERE user_id = $1", SETTINGS) is not None


def test_unique_join_keys_are_not_candidates(advisor_db):
    with psycopg.connect(advisor_db) as conn:
        shape = analyze("SELECT i.sku FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.customer_id = $1")
        labels = [c.label() for c in candidates_for(shape, Catalog(conn))[0]]
    assert not [label for label in labels if "orders (customer_id, id)" in label or label == "public.orders (id)"]
