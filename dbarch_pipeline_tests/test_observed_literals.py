"""The application's literals inside indexable expressions (`substr(code, 1, 8) = $1`), which
pg_stat_statements turns into parameters (`substr(code, $2, $3) = $1`): no index can be built on an
expression holding `$n`. The server log holds the statement as the application sent it: its bound
values and its literals are lined up with pg_stat_statements' `$n` (bench/observed.py), and the
literals go back into the expression (bench/params.py `inline_constants`), which then gets its
expression index. Expressions are generated from random seeds (printed; replay with
DBARCH_TEST_SEEDS=s1,s2)."""

from __future__ import annotations

import random

import psycopg
import pytest

from dbarch_pipeline.advisor.candidates import candidates_for, ddl_text, index_ddl
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.advisor.plan import analyze_planned, normalized, plan_uses_candidate
from dbarch_pipeline.bench.measure import _explain
from dbarch_pipeline.bench.observed import literal_values
from dbarch_pipeline.bench.params import hidden_literals, inline_constants, typed_statement

from .conftest import fresh_database, generated_seeds

ROWS = 30_000
SEEDS = generated_seeds(2)


@pytest.fixture(scope="module")
def codes_db(server):
    url = fresh_database("dbarch_test_obs_literals")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE codes (id int PRIMARY KEY, code text NOT NULL, cents int NOT NULL,
                                at timestamp NOT NULL);
            INSERT INTO codes SELECT g, 'K' || lpad(((g::bigint * 7919) % 20000)::text, 5, '0') || md5(g::text),
                                     (g::bigint * 104729) % 1000000,
                                     timestamp '2026-01-01' + make_interval(mins => g * 7)
            FROM generate_series(1, {ROWS}) g;
            ANALYZE codes""")
    return url


def _expression(rng: random.Random) -> tuple[str, str, object]:
    """(the application's expression with its literals, the index key PostgreSQL prints for it, a
    value the application compares it with, from a row)."""
    a, b = rng.randint(1, 3), rng.randint(4, 9)
    k = rng.randint(2, 500)
    unit = rng.choice(["day", "hour", "month"])
    return rng.choice([
        (f"substr(code, {a}, {b})", f"substr(code, {a}, {b})", f"substr(code, {a}, {b})"),
        (f"left(code, {b})", f"left(code, {b})", f"left(code, {b})"),
        (f"(cents / {k})", f"(cents / {k})", f"cents / {k}"),
        (f"date_trunc('{unit}', at)", f"date_trunc('{unit}'::text, at)", f"date_trunc('{unit}', at)"),
    ])


def _logged(where: str) -> str:
    """The statement's text as the server logs it for the extended protocol: psycopg's `%s` are `$n`."""
    n = 0
    out = []
    for piece in where.split("%s"):
        out.append(piece)
        n += 1
        out.append(f"${n}")
    return "".join(out[:-1])


@pytest.mark.parametrize("seed", SEEDS)
def test_logged_literals_come_back_into_the_expression_and_its_index_is_used(codes_db, seed):
    print(f"seed={seed} (replay with DBARCH_TEST_SEEDS={seed})")
    rng = random.Random(seed)
    with psycopg.connect(codes_db, autocommit=True) as conn:
        catalog = Catalog(conn)
        for case in range(4):
            expression, key, value_sql = _expression(rng)
            app = f"SELECT id, cents FROM codes WHERE {expression} = %s"
            values = [conn.execute(f"SELECT ({value_sql})::text FROM codes WHERE id = %s",
                                   (rng.randint(1, ROWS),)).fetchone()[0] for _ in range(3)]
            # this database's statements only: other databases of the server may be in use
            conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                         "WHERE datname = current_database()), 0)")
            for v in values:
                conn.execute(app.replace("%s", "%s::" + ("timestamp" if "date_trunc" in key else
                                                            "int" if "cents" in key else "text")), (v,))
            pgss_text = conn.execute(
                "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) AND query LIKE 'SELECT id, cents FROM codes%'").fetchone()[0]
            context = f"seed={seed} case={case}: {app} -> {pgss_text}"
            assert "$2" in pgss_text, context   # the literals became parameters
            logged = _logged(app.replace("%s", "%s::" + ("timestamp" if "date_trunc" in key else
                                                            "int" if "cents" in key else "text")))
            observed = [literal_values(pgss_text, logged, [v]) for v in values]
            assert all(o is not None and o[0] == v for o, v in zip(observed, values)), f"{context}: {observed}"

            text, sets = inline_constants(conn, typed_statement(conn, pgss_text), observed)
            assert "$2" not in text and sets == [(v,) for v in values], f"{context}: {text} {sets}"
            cands, _ = candidates_for(analyze_planned(text, catalog), catalog)
            [cand] = [c for c in cands if [normalized(k) for k in c.columns] == [normalized(key)]] or [None]
            assert cand is not None, f"{context}: {text} -> {[ddl_text(c) for c in cands]}"
            with conn.transaction(force_rollback=True):
                conn.execute(index_ddl(cand))
                conn.execute("ANALYZE codes")
                doc = _explain(conn, text, "FORMAT JSON", [values[0]])
                assert plan_uses_candidate(doc, cand, conn), f"{context}: {doc['Plan']}"


def test_without_observed_values_the_text_is_left_as_it_is(codes_db):
    query = "SELECT id FROM codes WHERE substr(code, $2, $3) = $1"
    with psycopg.connect(codes_db, autocommit=True) as conn:
        assert inline_constants(conn, query, None) == (query, None)
        # values that differ between calls are the application's own, not literals
        text, sets = inline_constants(conn, query, [("a", "1", "8"), ("b", "2", "8")])
        assert text == "SELECT id FROM codes WHERE substr(code, $2, '8'::integer) = $1"
        assert sets == [("a", "1"), ("b", "2")]
        # a `$n` compared with a column (not inside its expression) stays a parameter
        assert inline_constants(conn, "SELECT id FROM codes WHERE cents = $1", [("5",), ("5",)])[0] == \
            "SELECT id FROM codes WHERE cents = $1"


def test_a_logged_statement_with_literals_and_bound_values_is_lined_up():
    normalized = "SELECT * FROM t WHERE price BETWEEN $1 * $3 AND $2 * $4 + $5 AND code = $6"
    logged = "SELECT * FROM t WHERE price BETWEEN $1 * 100 AND $2 * 100 + 99 AND code = 'x'"
    assert literal_values(normalized, logged, ["7", "8"]) == ("7", "8", "100", "100", "99", "x")
    # a logged `$k` beyond the bound values does not line up
    assert literal_values(normalized, logged.replace("$2", "$9"), ["7", "8"]) is None


def test_without_the_log_the_missing_literals_are_the_named_reason():
    reason = hidden_literals("SELECT id FROM codes WHERE substr(code, $2, $3) = $1")
    assert reason and "$2, $3" in reason and "server log" in reason
    for query in ("SELECT id FROM codes WHERE substr(code, 1, 8) = $1",
                  "SELECT id FROM codes WHERE cents BETWEEN $1 * $3 AND $2 * $4 + $5"):
        assert hidden_literals(query) is None     # nothing an index needs is missing
