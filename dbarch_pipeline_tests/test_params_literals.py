"""The `$n` pg_stat_statements made of the application's literals (bench/params.py).

The application sends `cents BETWEEN $1 * 100 AND $2 * 100 + 99`; pg_stat_statements keeps
`cents BETWEEN $1 * $3 AND $2 * $4 + $5`, which PostgreSQL cannot prepare (`operator is not unique:
unknown * unknown`). dbarch types each such `$n` as PostgreSQL typed the literal (integer, numeric,
text: the first that resolves), gives it a constant's value and solves the expression for the
application's own `$n`. The statements here are generated from random seeds (printed; replay with
DBARCH_TEST_SEEDS=s1,s2), run by the application with bound parameters, and read back from
pg_stat_statements exactly as an audit reads them."""

from __future__ import annotations

import random
from decimal import Decimal

import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.audit import AuditSettings, recommend_statement
from dbarch_pipeline.bench.measure import analyze_once
from dbarch_pipeline.bench.params import ValueTarget, literal_types, parameter_types, sample_parameter_sets, \
    typed_statement
from dbarch_pipeline.bench.runner import BenchSettings
from dbarch_pipeline.db import rolled_back

from .conftest import fresh_database, generated_seeds

ROWS = 30_000
SEEDS = generated_seeds(2)


@pytest.fixture(scope="module")
def literals_db(server):
    url = fresh_database("dbarch_test_literals")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE prices (id int PRIMARY KEY, cents int NOT NULL, amount numeric NOT NULL,
                                 code text NOT NULL);
            INSERT INTO prices SELECT g, (g::bigint * 7919) % 100000, round(((g::bigint * 104729) % 100000) / 37.0, 2),
                                      'c' || (g % 5000)
            FROM generate_series(1, {ROWS}) g;
            ANALYZE prices""")
    return url


def _shape(rng: random.Random) -> tuple[str, object]:
    """(the application's WHERE with its literals and `%s`, the values it sends per call)."""
    k = rng.randint(2, 300)
    d = rng.randint(0, 2)
    f = round(rng.uniform(1.1, 9.9), 1)
    cents = lambda r: r.randrange(0, 100000)   # noqa: E731
    shapes = [
        (f"cents BETWEEN %s * {k} AND %s * {k} + {k - 1}", lambda r: (lambda v: (v, v))(cents(r) // k)),
        (f"cents = %s * {k}", lambda r: (cents(r) // k,)),
        (f"cents > %s + {k} AND cents < %s - {k}", lambda r: (lambda v: (v, v + 2 * k + 50))(cents(r))),
        (f"cents <= %s / {k} AND cents >= %s / {k} - {k}", lambda r: (lambda v: (v * k, v * k))(cents(r))),
        (f"amount > round(%s, {d}) AND amount < round(%s, {d}) + {f}",
         lambda r: (lambda v: (v, v))(Decimal(f"{r.uniform(0, 2700):.3f}"))),
        (f"amount BETWEEN %s * {f} AND %s * {f} + 1", lambda r: (lambda v: (v, v))(Decimal(f"{r.uniform(0, 2700) / f:.2f}"))),
        ("code = %s || 'x' OR cents = %s * 2", lambda r: (f"c{r.randrange(5000)}", cents(r) // 2)),
    ]
    return rng.choice(shapes)


def _normalized(url: str, where: str, args, rng: random.Random) -> tuple[str, float]:
    """The statement as pg_stat_statements keeps it after the application ran it, and its rows/call."""
    with psycopg.connect(url, autocommit=True) as conn:
        # this database's statements only: other databases of the server may be in use
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")
        for _ in range(3):
            conn.execute(f"SELECT id FROM prices WHERE {where}", args(rng))
        row = conn.execute("SELECT query, rows::float8 / calls FROM pg_stat_statements "
                           "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                           "AND query LIKE 'SELECT id FROM prices%'").fetchone()
    return row[0], row[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_constants_made_parameters_are_typed_and_the_expression_is_solved(literals_db, seed):
    print(f"seed={seed} (replay with DBARCH_TEST_SEEDS={seed})")
    rng = random.Random(seed)
    for case in range(6):
        where, args = _shape(rng)
        query, rows_per_call = _normalized(literals_db, where, args, rng)
        context = f"seed={seed} case={case}: {where} -> {query}"
        with psycopg.connect(literals_db, autocommit=True) as conn:
            typed = typed_statement(conn, query)
            types = parameter_types(conn, typed)
            # every `$n` of the statement is typed: it prepares, plans and binds
            assert len(types) == analyze(typed).param_count, context
            assert all(t in ("integer", "numeric", "text") for t in literal_types(conn, query).values()), context
            sets, plan = sample_parameter_sets(conn, analyze(typed), Catalog(conn), n_sets=2, query=typed,
                                               target=ValueTarget(rows_per_call=rows_per_call))
            assert sets and not plan.problems, f"{context}: {plan.problems}"
            found = 0
            for values in sets:
                with rolled_back(conn, statement_timeout_ms=10_000, lock_timeout_ms=2_000):
                    doc = analyze_once(conn, typed, values)
                found += doc["Plan"]["Actual Rows"]
            # the values were solved through the expression: they find rows, like the application's.
            # (Where the application's own calls find under two rows each, the lost constants' neutral
            # values can narrow the window to one value the data does not hold: both sets may find none,
            # as about one call in two of the application's would; seeds 441551, 670384, 993522.)
            assert found > 0 or rows_per_call < 2, f"{context}: {sets} (application: {rows_per_call} rows per call)"


def test_a_statement_the_server_can_type_is_left_as_it_is(literals_db):
    with psycopg.connect(literals_db, autocommit=True) as conn:
        for query in ("SELECT id FROM prices WHERE cents = $1", "SELECT id FROM prices WHERE code = $1 || $2",
                      "SELECT id FROM prices WHERE amount > round($1, $2)"):
            assert typed_statement(conn, query) == query
        # a statement broken for another reason is not "fixed" by casts
        assert typed_statement(conn, "SELECT id FROM prices WHERE nope = $1 * $2") == \
            "SELECT id FROM prices WHERE nope = $1 * $2"


def test_the_price_band_of_the_quality_suite_is_measured_and_its_index_found(literals_db):
    rng = random.Random(5)
    query, rows_per_call = _normalized(literals_db, "cents BETWEEN %s * 100 AND %s * 100 + 99",
                                       lambda r: (lambda v: (v, v))(r.randint(1, 999)), rng)
    assert "$3" in query   # pg_stat_statements made the literals parameters
    settings = AuditSettings(bench=BenchSettings(runs=3, param_sets=2, measure_write_cost=False))
    with psycopg.connect(literals_db, autocommit=True) as conn:
        best = recommend_statement(conn, query, settings, mean_rows=rows_per_call)
    assert best is not None and best["evidence"]["index"].startswith("public.prices (cents)")
    assert best["evidence"]["index_used"] and best["measured_gain_pct"] > 50


def test_an_aggregate_is_calibrated_on_the_clock(literals_db):
    """rows/calls cannot tell an aggregate's values apart (one row whatever the window): the level
    is bisected on the clock against the statement's mean time instead (the same bisection as on
    PostgreSQL's row estimate, with the clock as the measure)."""
    query = "SELECT count(*), sum(amount) FROM prices WHERE cents > $1"
    with psycopg.connect(literals_db, autocommit=True) as conn:
        with rolled_back(conn, statement_timeout_ms=10_000, lock_timeout_ms=2_000):
            doc = analyze_once(conn, query, ["50000"])
        mean_ms = float(doc["Plan"].get("Actual Total Time") or 1.0)
        sets, plan = sample_parameter_sets(conn, analyze(query), Catalog(conn), n_sets=2, query=query,
                                           target=ValueTarget(rows_per_call=1.0, mean_ms=mean_ms))
    assert sets and not plan.problems
    assert plan.calibration["method"] == "time", plan.calibration
    assert 0.0 <= plan.calibration["level"] <= 1.0
    # the probe ran the statement: its time is of the order of the target's (the same sequential scan)
    assert mean_ms / 10 < plan.calibration["probe_ms"] < mean_ms * 10, (mean_ms, plan.calibration)
