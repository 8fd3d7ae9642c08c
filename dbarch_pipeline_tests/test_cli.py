"""The `dbarch` command's contract: `audit --json` against any database, and clear errors with a
non-zero exit for an unreachable DSN, a missing pg_stat_statements and a store without pgvector;
"no slow queries" is a normal outcome; unparseable statements are skipped and counted."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from dbarch_pipeline import embedded
from dbarch_pipeline.cli import EXIT_PROBLEM, main

from .conftest import db_name, fresh_database

FAST = ["--runs", "2", "--param-sets", "2", "--min-calls", "3", "--min-mean-ms", "0.5", "--ephemeral"]


def test_audit_writes_the_json_contract(demo_target, store_dsn, tmp_path, capsys):
    out = tmp_path / "audit.json"
    code = main(["audit", "--target-dsn", demo_target, "--store-dsn", store_dsn, "--json", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["recommendations"], data
    for rec in data["recommendations"]:
        assert {"query", "queryid", "kind", "ddl", "estimated_gain_pct", "measured_gain_pct", "confidence",
                "evidence"} <= rec.keys()
        assert 0.0 <= rec["confidence"] <= 1.0
        assert rec["ddl"].startswith("CREATE INDEX") and ";" not in rec["ddl"]
    assert "dbarch audit of" in capsys.readouterr().out


def test_unreachable_target_is_a_clear_error(store_dsn, capsys):
    code = main(["audit", "--target-dsn", "postgresql://nobody@127.0.0.1:1/nothing", "--store-dsn", store_dsn,
                 "--json", "/dev/null", "--ephemeral"])
    err = capsys.readouterr().err
    assert code == EXIT_PROBLEM
    assert "cannot connect to the target database postgresql://nobody@127.0.0.1:1/nothing" in err
    assert "fix:" in err


def test_invalid_dsn_is_a_clear_error(capsys):
    code = main(["audit", "--target-dsn", "host=localhost port=notaport dbname", "--json", "/dev/null"])
    assert code == EXIT_PROBLEM
    assert "not a valid connection string" in capsys.readouterr().err


def test_missing_pg_stat_statements_says_how_to_enable_it(server, store_dsn, capsys):
    url = fresh_database("dbarch_test_nopgss", pg_stat_statements=False)
    code = main(["audit", "--target-dsn", url, "--store-dsn", store_dsn, "--json", "/dev/null", "--ephemeral"])
    err = capsys.readouterr().err
    assert code == EXIT_PROBLEM
    assert "pg_stat_statements is not installed" in err
    assert "shared_preload_libraries" in err and "CREATE EXTENSION pg_stat_statements" in err


def test_store_that_cannot_get_pgvector_is_a_clear_error(demo_target, capsys):
    """A store user without the right to create the vector extension (as on many managed servers)."""
    url = fresh_database("dbarch_test_store_novector", pg_stat_statements=False)
    role = db_name("dbarch_test_limited")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    limited = url.replace("postgres@", f"{role}@")
    code = main(["audit", "--target-dsn", demo_target, "--store-dsn", limited, "--json", "/dev/null",
                 "--ephemeral"])
    err = capsys.readouterr().err
    assert code == EXIT_PROBLEM
    assert "may not create dbarch's schema or the vector extension" in err and "fix:" in err


def test_no_slow_queries_is_normal(server, store_dsn, tmp_path, capsys):
    url = fresh_database("dbarch_test_quiet")
    out = tmp_path / "quiet.json"
    code = main(["audit", "--target-dsn", url, "--store-dsn", store_dsn, "--json", str(out), "--ephemeral"])
    assert code == 0
    assert "no slow queries" in capsys.readouterr().out
    assert json.loads(out.read_text())["recommendations"] == []


def test_target_without_pgvector_uses_embedded_store(demo_target, capsys, tmp_path):
    """The target never needs pgvector: the store defaults to the embedded server."""
    with psycopg.connect(demo_target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 0
    out = tmp_path / "a.json"
    code = main(["audit", "--target-dsn", demo_target, "--json", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["target"] == db_name("dbarch_test_target")
    with psycopg.connect(embedded.url("dbarch"), autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM dbarch.optimization_log WHERE target = %s",
                         (db_name("dbarch_test_target"),)).fetchone()[0]
        # leave the developer's own store as it was
        conn.execute("DELETE FROM dbarch.optimization_log WHERE target = %s", (db_name("dbarch_test_target"),))
        conn.execute("DELETE FROM dbarch.snapshot WHERE target = %s", (db_name("dbarch_test_target"),))
        conn.execute("DELETE FROM dbarch.pgss_capture WHERE target = %s", (db_name("dbarch_test_target"),))
    assert n >= 1


def test_unparseable_statements_are_skipped_and_counted(demo_target, store_dsn, resources_for):
    from dbarch_pipeline.run import materialize_audit

    with psycopg.connect(demo_target, autocommit=True) as conn:
        for _ in range(5):
            # valid PostgreSQL that sqlglot cannot parse
            conn.execute("SELECT id, country FROM users WHERE country = %s ORDER BY created_at USING <", ("VN",))
    result = materialize_audit(resources_for(demo_target, min_mean_ms=0.0))
    meta = result.asset_materializations_for_node("index_recommendations")[0].metadata
    assert meta["summary"].value["unparseable"] >= 1
    assert result.success


@pytest.mark.parametrize("action", ["status", "url"])
def test_db_commands(server, action, capsys):
    assert main(["db", action]) == 0
    out = capsys.readouterr().out
    assert ("running" in out) if action == "status" else out.startswith("postgresql://")


def test_optimizations_and_similar_list_the_memory(demo_target, store_dsn, capsys):
    assert main(["audit", "--target-dsn", demo_target, "--store-dsn", store_dsn, *FAST]) == 0
    capsys.readouterr()
    assert main(["optimizations", "--store-dsn", store_dsn]) == 0
    listing = capsys.readouterr().out
    assert "CREATE INDEX" in listing and "confidence" in listing
    assert main(["similar", "SELECT * FROM behavior_log WHERE user_id = $1", "--store-dsn", store_dsn,
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and "behavior_log" in rows[0]["ddl"]


def test_optimizations_say_why_a_confidence_was_lowered(store_dsn, capsys):
    """A capped confidence (a side effect, guessed values, ...) names its cause in the listing, as the
    pull-request body does; a row with a pull request shows it."""
    from dbarch_pipeline.memory import store
    from dbarch_pipeline.resources.postgres import StoreDatabase

    side = "a side effect on a statement the index was not proposed for"
    rows = [{"target": "cli_notes", "fingerprint": f"fp{i}", "queryid": i, "query_text": f"SELECT {i} FROM t",
             "recommendation": "r", "kind": "index", "ddl": f"CREATE INDEX i{i} ON t (c{i})", "performance_gain": 17.1,
             "estimated_gain": 10.0, "confidence": conf, "embedding": None, "evidence": {"confidence_notes": notes},
             "snapshot_id": None} for i, (conf, notes) in enumerate([(0.5, [side]), (0.95, [])])]
    with StoreDatabase(dsn=store_dsn).connect() as s:
        store.write_optimization_log(s, rows)
        s.execute("UPDATE dbarch.optimization_log SET pr_url = 'https://example.test/pr/7' "
                  "WHERE target = 'cli_notes' AND ddl LIKE '%%i1%%'")
    assert main(["optimizations", "--target", "cli_notes", "--store-dsn", store_dsn]) == 0
    out = capsys.readouterr().out
    assert out.count("    confidence: ") == 1 and f"confidence: {side}" in out
    assert "pull request: https://example.test/pr/7" in out


def test_audit_of_a_past_week_uses_stored_captures_only(demo_target, store_dsn, capsys):
    """No capture was stored for that week: nothing to audit, said plainly, exit 0."""
    code = main(["audit", "--target-dsn", demo_target, "--store-dsn", store_dsn, "--week", "2025-03-12",
                 "--no-pull-requests", *FAST])
    assert code == 0
    assert "no slow queries" in capsys.readouterr().out
    assert main(["audit", "--target-dsn", demo_target, "--week", "last tuesday"]) == EXIT_PROBLEM
    assert "not a date" in capsys.readouterr().err
