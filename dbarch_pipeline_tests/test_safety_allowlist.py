"""The allow-list on generated statements: random compositions of PostgreSQL's own functions,
operators, casts, aggregates, windows, subqueries and CTEs pass; the same statements with one route
into user-defined code (an overload of a built-in's name, a view column, a domain's CHECK, an
operator, attribute notation, a user cast, an aggregate, a set-returning function, a row-level
security policy, a view over a view) are refused, naming the function. Seeds are printed.

Also: the benchmark never executes an application statement the allow-list refuses (it is costed
with EXPLAIN only, the reason kept in its evidence), and every EXPLAIN runs read-only; the probe
itself never runs anything and leaves the connection as it found it.
"""

from __future__ import annotations

import random

import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.bench.measure import analyze_once
from dbarch_pipeline.bench.runner import BenchSettings, benchmark_statement
from dbarch_pipeline.db import connect, rolled_back
from dbarch_pipeline.models import IndexCandidate
from dbarch_pipeline.safety.allowlist import check_statement, nesting_depth, precheck
from dbarch_pipeline.safety.walls import read_only_section

from .conftest import fresh_database

SEEDS = range(8)
PER_SEED = 12


@pytest.fixture(scope="module")
def db(server):
    url = fresh_database("dbarch_test_allowlist")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, label text NOT NULL, "
                     "price numeric NOT NULL, tags jsonb NOT NULL DEFAULT '{}')")
        conn.execute("INSERT INTO items SELECT g, g % 100, 'item ' || g, g * 1.5, "
                     "jsonb_build_object('k', g % 7) FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE items")
        conn.execute("CREATE SEQUENCE bumps")
        conn.execute("CREATE FUNCTION bump(int) RETURNS int LANGUAGE sql AS $$ SELECT nextval('bumps')::int + $1 $$")
        conn.execute("CREATE FUNCTION lower(int) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT 'x' || bump($1) $$")
        conn.execute("CREATE FUNCTION guard(int) RETURNS bool IMMUTABLE LANGUAGE sql AS $$ SELECT bump($1) > 0 $$")
        conn.execute("CREATE VIEW items_plus AS SELECT id, owner, guard(owner) AS ok FROM items")
        conn.execute("CREATE VIEW items_plus_plus AS SELECT id, owner FROM items_plus")
        conn.execute("CREATE DOMAIN positive AS int CHECK (guard(VALUE))")
        conn.execute("CREATE FUNCTION close_to(int, int) RETURNS bool IMMUTABLE LANGUAGE sql AS $$ SELECT guard($1) $$")
        conn.execute("CREATE OPERATOR =~= (LEFTARG = int, RIGHTARG = int, FUNCTION = close_to)")
        conn.execute("CREATE FUNCTION flagged(items) RETURNS bool IMMUTABLE LANGUAGE sql AS $$ SELECT guard($1.owner) $$")
        conn.execute("CREATE TYPE mood AS ENUM ('low', 'high')")
        conn.execute("CREATE FUNCTION to_mood(int) RETURNS mood IMMUTABLE LANGUAGE sql AS "
                     "$$ SELECT CASE WHEN guard($1) THEN 'high'::mood ELSE 'low'::mood END $$")
        conn.execute("CREATE CAST (int AS mood) WITH FUNCTION to_mood(int)")
        conn.execute("CREATE AGGREGATE total(int) (SFUNC = int4pl, STYPE = int, INITCOND = '0')")
        conn.execute("CREATE FUNCTION owners() RETURNS SETOF int LANGUAGE sql AS $$ SELECT bump(1) $$")
        conn.execute("CREATE TABLE guarded (id int, owner int)")
        conn.execute("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY only_good ON guarded USING (guard(owner))")
    return url


# Built-in pieces a statement over items is made of (each a SELECT-list expression or a filter).
SAFE_EXPRESSIONS = [
    "lower(label)", "upper(label)", "length(label)", "coalesce(label, '')", "abs(owner - 50)", "owner + 1",
    "price * 2", "round(price, 1)", "label || '!'", "substr(label, 2, 3)", "now()", "date_trunc('day', now())",
    "tags->>'k'", "(tags->'k')::text", "owner::text", "owner::bigint", "CASE WHEN owner > 5 THEN 'a' ELSE 'b' END",
    "greatest(owner, 3)", "md5(label)", "to_char(price, '999.99')", "split_part(label, ' ', 2)",
    "array_length(ARRAY[owner, id], 1)", "jsonb_typeof(tags)", "extract(year FROM now())", "random() < 2",
]
SAFE_FILTERS = [
    "owner = 3", "label LIKE 'item 1%'", "owner IN (1, 2, 3)", "price BETWEEN 10 AND 500", "tags ? 'k'",
    "tags @> '{\"k\": 1}'", "id > 100 AND owner < 50", "label ILIKE '%5'", "owner IS NOT NULL",
    "id = ANY(ARRAY[1, 2, 3])", "EXISTS (SELECT 1 FROM items j WHERE j.id = i.owner)",
    "owner IN (SELECT owner FROM items WHERE id < 10)", "lower(label) = 'item 7'",
]
SHAPES = [
    "SELECT {e} AS v FROM items i WHERE {f} LIMIT 5",
    "SELECT owner, count(*), sum(price), count({e}) FROM items i WHERE {f} GROUP BY owner",
    "WITH t AS (SELECT * FROM items i WHERE {f}) SELECT {e} AS v FROM t i ORDER BY 1 LIMIT 3",
    "SELECT {e} AS v, row_number() OVER (PARTITION BY owner ORDER BY id) FROM items i WHERE {f}",
    "SELECT * FROM (SELECT {e} AS v FROM items i WHERE {f}) q ORDER BY 1 DESC",
    "SELECT {e} AS v FROM items i WHERE {f} UNION ALL SELECT {e} FROM items i WHERE id = 1",
    "SELECT {e} AS v FROM items i JOIN (SELECT id AS jid FROM items) j ON j.jid = i.owner WHERE {f}",
]
# Routes into user code, and the function each must be refused for.
INJECTIONS = [
    ("lower(owner)", None, "lower(integer)"),                           # overload of a built-in's name
    (None, "i.id IN (SELECT id FROM items_plus WHERE ok)", "guard(integer)"),   # a view's column
    (None, "i.id IN (SELECT id FROM items_plus_plus)", "guard(integer)"),       # a view over a view
    ("owner::positive", None, "guard(integer)"),                        # a domain's CHECK
    (None, "i.owner =~= 3", "=~=(integer,integer)"),                    # a user operator
    ("i.flagged", None, "flagged(items)"),                              # attribute notation
    ("owner::mood", None, "to_mood(integer)"),                          # a user cast
    (None, "i.owner IN (SELECT total(owner) FROM items)", "total(integer)"),   # a user aggregate
    (None, "i.owner IN (SELECT * FROM owners())", "owners()"),          # a set-returning function
    (None, "i.id IN (SELECT id FROM guarded)", "guard(integer)"),       # a row-level security policy
    ("bump(owner)", None, "bump(integer)"),                             # named, volatile, with nextval
]


def generated(seed: int) -> list[tuple[str, str | None]]:
    """(statement, the function it must be refused for or None)."""
    rng = random.Random(seed)
    out = []
    for _ in range(PER_SEED):
        expr, filt, expected = rng.choice(SAFE_EXPRESSIONS), rng.choice(SAFE_FILTERS), None
        shapes = SHAPES
        if rng.random() < 0.5:
            inj_expr, inj_filter, expected = rng.choice(INJECTIONS)
            expr = inj_expr or expr
            filt = f"{filt} AND {inj_filter}" if inj_filter else filt
            if inj_expr == "i.flagged":   # attribute notation needs the table's own row
                shapes = [sh for sh in SHAPES if not sh.startswith("WITH")]
        out.append((rng.choice(shapes).format(e=expr, f=filt), expected))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_statements(db, seed):
    print(f"seed {seed}")
    with connect(db, "target") as conn:
        before = conn.execute("SELECT last_value, is_called FROM bumps").fetchone()
        for text, expected in generated(seed):
            verdict = check_statement(conn, text, allowed_schemas=["public"])
            if expected is None:
                assert verdict.ok, (seed, text, verdict.reasons)
                assert "public.items" in verdict.relations
                rows = conn.execute(text).fetchall()   # and PostgreSQL runs it as checked
                assert rows is not None
            else:
                assert not verdict.ok, (seed, text)
                assert any(expected in r for r in verdict.reasons), (seed, text, expected, verdict.reasons)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # checking never ran anything
        assert conn.execute("SELECT last_value, is_called FROM bumps").fetchone() == before


def test_the_probe_works_inside_a_transaction_and_with_parameters(db):
    with connect(db, "target") as conn:
        with rolled_back(conn, statement_timeout_ms=5_000, lock_timeout_ms=1_000):
            verdict = check_statement(conn, "SELECT label FROM items WHERE owner = $1 AND price > $2")
            assert verdict.ok and verdict.param_types == ["integer", "numeric"]
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        typed = check_statement(conn, "SELECT $1 || label FROM items", param_types=["text"])
        assert typed.ok and typed.param_types == ["text"]


@pytest.mark.parametrize("text, words", [
    ("SELECT 1; DELETE FROM items", "cannot insert multiple commands"),
    ("SELECT 1) q; DELETE FROM items; SELECT (1", "syntax error"),
    ("DELETE FROM items RETURNING id", "syntax error"),
    ("WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM d", "data-modifying statement"),
    ("SELECT * FROM items FOR UPDATE", "FOR UPDATE/SHARE"),
    ("SELECT * INTO stolen FROM items", "INTO"),
    ("SELECT nextval('bumps')", "nextval"),
    ("SELECT * FROM pg_stat_activity", "pg_catalog.pg_stat_activity"),
    ("SELECT 1 FROM items WHERE " + "(" * 500 + "true" + ")" * 500, "parser bomb"),
    ("", "empty statement"),
])
def test_refusals_say_why(db, text, words):
    with connect(db, "target") as conn:
        verdict = check_statement(conn, text, allowed_schemas=["public"])
        assert not verdict.ok and words in verdict.reason, verdict.reasons
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 20000


def test_nesting_is_measured_outside_quotes():
    assert nesting_depth("SELECT ((1)) + '((((((' ") == 2
    assert precheck("SELECT " + "(" * 201 + "1" + ")" * 201)
    assert precheck("SELECT '" + "(" * 5000 + "'") is None


def test_the_benchmark_only_costs_what_it_may_not_run(db):
    """An application statement calling a user function that consumes a sequence: costed with
    EXPLAIN, never executed; the evidence says why; the sequence is untouched."""
    with connect(db, "sandbox") as conn:
        before = conn.execute("SELECT last_value, is_called FROM bumps").fetchone()
        query = "SELECT id, label FROM items WHERE owner = $1 AND bump(id) > 0"
        cand = IndexCandidate(schema="public", table="items", columns=("owner",), reason="test")
        rows = benchmark_statement(conn, query, analyze(query), [cand], Catalog(conn),
                                   BenchSettings(runs=1, param_sets=2, measure_write_cost=False))
        assert conn.execute("SELECT last_value, is_called FROM bumps").fetchone() == before
    row = rows[0]
    assert row["status"] == "measured" and row["evidence"]["confidence_parts"] == {"planner_only": True}
    assert "bump(integer)" in row["evidence"]["not_executed"]
    assert row["cost_before"] is not None and row["evidence"]["runs_per_set"] == 0


def test_every_explain_analyze_runs_read_only(db):
    """The second wall under the benchmark: even a statement that slipped past the allow-list cannot
    write, and the surrounding (writable) experiment carries on."""
    with connect(db, "sandbox") as conn:
        before = conn.execute("SELECT last_value, is_called FROM bumps").fetchone()
        with rolled_back(conn, statement_timeout_ms=5_000, lock_timeout_ms=1_000):
            conn.execute("CREATE INDEX items_label_probe ON items (label)")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                analyze_once(conn, "SELECT bump(1)", [])
            conn.execute("CREATE INDEX items_price_probe ON items (price)")   # writable again
            with read_only_section(conn):
                assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
            assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"
        assert conn.execute("SELECT last_value, is_called FROM bumps").fetchone() == before


@pytest.mark.parametrize("depth", [150, 400, 5000])
def test_the_audits_parsers_survive_parser_bombs(depth):
    """An application statement nested deeply (generated SQL does this) is skipped as unparseable,
    never a RecursionError that stops the audit; its fingerprint falls back to the text."""
    from dbarch_pipeline.advisor.analyze import UnparseableQuery
    from dbarch_pipeline.memory.fingerprint import fingerprint

    text = "SELECT " + "(" * depth + "1" + ")" * depth + " FROM items WHERE owner = $1"
    with pytest.raises(UnparseableQuery):
        analyze(text)
    assert len(fingerprint(text)) == 16
