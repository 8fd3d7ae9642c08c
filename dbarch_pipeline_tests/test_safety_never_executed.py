"""An application statement the allow-list refuses is never executed by an audit, only planned.

The statement calls a PL/pgSQL function that writes a row to a side table and raises a NOTICE.
A rolled-back transaction would undo the row, so the row alone proves nothing: pg_stat_statements
(with `track = all`, which counts the statements a function runs, whether or not their transaction
later rolls back) is the witness, and so is the NOTICE, which would reach the connection dbarch
works on. The advisor runs on the statement as an audit does (candidates, values calibrated against
pg_stat_statements' rows per call and mean time, baseline and candidate measurements); afterwards
the function's INSERT has run exactly as often as the application ran it, no NOTICE arrived, the
side table is as the test left it, and the evidence names why the statement was only costed."""

from __future__ import annotations

import psycopg

from dbarch_pipeline import demo
from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.candidates import candidates_for
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.bench.params import ValueTarget
from dbarch_pipeline.bench.runner import BenchSettings, benchmark_statement
from dbarch_pipeline.db import connect

from .conftest import fresh_database

WITNESS = ("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
           "WHERE datname = current_database()) AND query LIKE 'INSERT INTO side_effects%'")


def _db() -> str:
    url = fresh_database("dbarch_test_never_run")
    with psycopg.connect(url, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{db}" SET pg_stat_statements.track = \'all\'')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE items (id int PRIMARY KEY, shelf int NOT NULL, code text NOT NULL);
            INSERT INTO items SELECT g, g % 2500, md5(g::text) FROM generate_series(1, 40000) g;
            CREATE TABLE side_effects (shelf int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
            CREATE FUNCTION noted(s int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                INSERT INTO side_effects (shelf) VALUES (s);
                RAISE NOTICE 'noted(%) ran', s;
                RETURN true;
            END $$""")
        conn.execute("VACUUM ANALYZE items")
        demo.reset_statistics(conn)
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        for shelf in range(8):
            conn.execute("SELECT id, code FROM items WHERE shelf = %s AND noted(shelf)", (shelf,))
        assert len(notices) == 8 * 16      # the application ran it: 16 rows per shelf, one NOTICE each
        conn.execute("TRUNCATE side_effects")
        conn.execute("SELECT pg_stat_force_next_flush()")
    return url


def test_a_statement_the_allow_list_refuses_is_planned_never_run(server):
    url = _db()
    with psycopg.connect(url, autocommit=True) as conn:
        ran_before = conn.execute(WITNESS).fetchone()[0]
        query, rows, mean_ms = conn.execute(
            "SELECT query, rows::float8 / calls, mean_exec_time FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query LIKE 'SELECT id, code FROM items%'").fetchone()
    assert ran_before == 8 * 16          # the witness sees the application's own runs
    assert "$1" in query and "noted(" in query     # this database's statement, not another test's

    notices: list[str] = []
    with connect(url, "sandbox") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        catalog = Catalog(conn)
        shape = analyze(query)
        cands, _ = candidates_for(shape, catalog, min_table_rows=1000)
        assert cands, "the statement has an index candidate (shelf): the benchmark has work to do"
        results = benchmark_statement(conn, query, shape, cands, catalog,
                                      BenchSettings(runs=2, param_sets=2, measure_write_cost=False),
                                      target=ValueTarget(rows_per_call=rows, mean_ms=mean_ms))

    assert notices == []
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(WITNESS).fetchone()[0] == ran_before      # not one more run, not even rolled back
        assert conn.execute("SELECT count(*) FROM side_effects").fetchone()[0] == 0
    assert results and all("noted(integer)" in (r["evidence"].get("not_executed") or "") for r in results), [(r["evidence"].get("not_executed"), r["evidence"].get("verdict"), r["evidence"].get("index")) for r in results]
    assert all(r["evidence"]["confidence_parts"] == {"planner_only": True} for r in results)
    assert all(r["cost_before"] is not None and r["cost_after"] is not None for r in results)

    # the witness works: one run in a transaction that rolls back leaves no row but is counted
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT id, code FROM items WHERE shelf = %s AND noted(shelf)", (0,))
        conn.execute("SELECT pg_stat_force_next_flush()")
        assert conn.execute("SELECT count(*) FROM side_effects").fetchone()[0] == 0
        assert conn.execute(WITNESS).fetchone()[0] == ran_before + 16


def test_a_write_whose_where_the_allow_list_refuses_is_never_run_even_by_its_row_scan(server, store_dsn):
    """A write is timed by the SELECT that finds its rows (bench/scan.py): that SELECT carries the
    write's WHERE, so it passes the same allow-list, and a refused function is never run by it."""
    from dbarch_pipeline import report
    from dbarch_pipeline.run import audit_resources, materialize_audit

    url = _db()
    with psycopg.connect(url, autocommit=True) as conn:
        for shelf in range(8):
            conn.execute("UPDATE items SET code = code WHERE shelf = %s AND noted(shelf)", (shelf,))
        conn.execute("TRUNCATE side_effects")
        conn.execute("SELECT pg_stat_force_next_flush()")
        ran_before = conn.execute(WITNESS).fetchone()[0]
    assert ran_before == 2 * 8 * 16
    resources = audit_resources(target_dsn=url, store_dsn=store_dsn,
                                settings={"runs": 2, "param_sets": 2, "min_mean_ms": 0.0, "min_calls": 3})
    materialize_audit(resources)
    with resources["store"].connect() as s:
        result = report.audit_result(s, target=resources["target"].target_name(),
                                     settings=resources["audit_settings"].settings())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        assert conn.execute(WITNESS).fetchone()[0] == ran_before      # not one more run, not even rolled back
        assert conn.execute("SELECT count(*) FROM side_effects").fetchone()[0] == 0
    update = [q for q in result["queries"] if q["query"].startswith("UPDATE items")]
    assert update, [q["query"] for q in result["queries"]]
    recs = [r for r in result["recommendations"] if r["query"].startswith("UPDATE items")]
    # only costed: the scan's verdict names the function, whatever the selection made of it
    assert all("noted(integer)" in (r["evidence"].get("not_executed") or "") for r in recs), recs


def test_an_expression_the_allow_list_refuses_is_never_evaluated_to_sample_values(server):
    """Values for `$n` are sampled by evaluating the expression it is compared with on the table's
    rows (`tagged(shelf) = $1`, or the documents of `tagdoc(doc) ? $1`, counted over thousands of
    rows): a refused statement's expression is never evaluated for that, nor for anything else."""
    url = _db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            ALTER TABLE items ADD COLUMN doc jsonb NOT NULL DEFAULT '{"a": 1}';
            CREATE FUNCTION tagged(s int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
            BEGIN INSERT INTO side_effects (shelf) VALUES (s); RETURN s % 7; END $$;
            CREATE FUNCTION tagdoc(d jsonb) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
            BEGIN INSERT INTO side_effects (shelf) VALUES (-1); RETURN d; END $$""")
        conn.execute("ANALYZE items")
        for value in (1, 2, 3):
            conn.execute("SELECT id FROM items WHERE tagged(shelf) = %s", (value,))
        for key in ("a", "b"):
            conn.execute("SELECT id FROM items WHERE tagdoc(doc) ? %s", (key,))
        conn.execute("TRUNCATE side_effects")
        conn.execute("SELECT pg_stat_force_next_flush()")
        ran_before = conn.execute(WITNESS).fetchone()[0]
        statements = conn.execute(
            "SELECT query, rows::float8 / calls, mean_exec_time FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND (query LIKE '%tagged(shelf) = $1%' OR query LIKE '%tagdoc(doc) ? $1%')").fetchall()
    assert len(statements) == 2 and ran_before == 8 * 16 + 5 * 40_000   # _db's own runs, then these
    for query, rows, mean_ms in statements:
        with connect(url, "sandbox") as conn:
            catalog = Catalog(conn)
            shape = analyze(query)
            cands, _ = candidates_for(shape, catalog, min_table_rows=1000)
            results = benchmark_statement(conn, query, shape, cands, catalog,
                                          BenchSettings(runs=2, param_sets=2, measure_write_cost=False),
                                          target=ValueTarget(rows_per_call=rows, mean_ms=mean_ms))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            assert conn.execute(WITNESS).fetchone()[0] == ran_before, query   # not one evaluation
        assert all("not_executed" in r["evidence"] for r in results), [r["evidence"] for r in results]
