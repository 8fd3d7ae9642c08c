"""The week a DBA opens: one current recommendation per target and statement after re-runs of a
week (Dagster's materialize on partition keys), and every reader (CLI, similar, pull requests) sees
only those unless asked for history; the demo's flow followed by the daemon's first sensor tick
launches no run."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import psycopg
import pytest

import dagster as dg

from dbarch_pipeline import cli, demo, run
from dbarch_pipeline.defs.sensors import slow_query_spike
from dbarch_pipeline.defs.partitions import audit_key, week_of
from dbarch_pipeline.memory import store
from dbarch_pipeline.prs import publish
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database


def _current(store_dsn: str, target: str) -> list[tuple]:
    with psycopg.connect(store_dsn) as conn:
        return conn.execute("SELECT fingerprint, kind, ddl, status FROM dbarch.optimization_log "
                            "WHERE target = %s AND status <> 'superseded'", (target,)).fetchall()


@pytest.fixture(scope="module")
def week_store(server) -> str:
    return fresh_database("dbarch_test_store_week", pg_stat_statements=False)


@pytest.fixture(scope="module")
def week_rerun(demo_target, week_store):
    """The same week audited twice (once per module: the tests only read, the one that audits again
    runs last), the workload-wide choice changing between runs (every index worth it, then at most
    one)."""
    store_dsn = week_store
    resources = audit_resources(target_dsn=demo_target, store_dsn=store_dsn, settings=FAST_SETTINGS)
    name = resources["target"].target_name()
    key = audit_key(name, week_of(datetime.now(timezone.utc)))
    materialize_audit(resources, partition_key=key)
    first = _current(store_dsn, name)
    narrow = audit_resources(target_dsn=demo_target, store_dsn=store_dsn, settings={**FAST_SETTINGS, "max_indexes": 1})
    result = materialize_audit(narrow, partition_key=key)
    second = _current(store_dsn, name)
    return resources, name, key, first, second, result


def test_rerun_leaves_one_current_recommendation_per_statement(week_rerun, week_store, capsys):
    store_dsn = week_store
    resources, name, key, first, second, result = week_rerun
    assert len(first) >= 2, first
    for rows in (first, second):
        per_statement = Counter((fp, kind) for fp, kind, _ddl, _status in rows)
        assert max(per_statement.values()) == 1, per_statement
    # the narrower run chose one index: the statements it no longer serves lost their current row
    assert len({ddl for *_, ddl, _ in second}) == 1
    with psycopg.connect(store_dsn) as conn:
        history = conn.execute("SELECT count(*) FROM dbarch.optimization_log WHERE target = %s "
                               "AND status = 'superseded' AND superseded_at IS NOT NULL", (name,)).fetchone()[0]
    # each first-run row the narrower run did not choose again (same statement, same index) is history
    kept = {(fp, kind, ddl) for fp, kind, ddl, _status in second}
    assert history == len([r for r in first if r[:3] not in kept]) > 0
    meta = result.asset_materializations_for_node("optimization_log")[0].metadata
    assert meta["summary"].value["superseded"] == history
    assert meta["summary"].value["current_recommendations"] == len(second)
    assert meta[f"recommendations [{name}]"].value == len(second)

    # readers: the CLI (current by default, everything with --history), similar, pull requests
    assert cli.main(["optimizations", "--store-dsn", store_dsn, "--target", name, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(r["ddl"] for r in shown) == sorted(ddl for *_, ddl, _ in second)
    assert cli.main(["optimizations", "--store-dsn", store_dsn, "--target", name, "--json", "--history"]) == 0
    # history: every row either run wrote (the narrower run may have chosen an index the first did not)
    assert len(json.loads(capsys.readouterr().out)) == len({r[:3] for r in first} | {r[:3] for r in second})
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        store.ensure_schema(conn)
        vector = store.embeddings_for(conn, [second[0][0]])[second[0][0]]
        near = store.similar_optimizations(conn, vector, limit=20)
        assert {r["ddl"] for r in near} <= {ddl for *_, ddl, _ in second}
        assert all(r["status"] != "superseded" for r in near)
        everything = store.similar_optimizations(conn, vector, limit=20, history=True)
        assert any(r["status"] == "superseded" for r in everything)
        picked = publish.select(conn, target=name, settings=publish.PublishSettings())
        assert {r["ddl"] for r in picked.eligible + [dict(ddl=s["ddl"]) for s in picked.skipped]} <= \
            {ddl for *_, ddl, _ in second}


def test_demo_then_the_daemon_first_tick_launches_no_run(demo_target, resources_for, store_dsn):
    """What `dbarch demo` does (capture, workload, audit of this week), then the spike sensor's first
    tick with an empty cursor, as the daemon started by `make ui` evaluates it: no run."""
    resources = resources_for(demo_target)
    with dg.instance_for_test() as instance:
        with psycopg.connect(demo_target, autocommit=True) as conn:
            demo.reset_statistics(conn)
            assert run.capture_now(resources, instance=instance).success
            demo.run_workload(conn, repeat=0.5, progress=lambda _m: None, reset_stats=False)
        assert run.materialize_audit(resources, instance=instance).success
        launched = len(instance.get_runs())
        tick = slow_query_spike(dg.build_sensor_context(instance=instance, resources=resources))
        assert not tick.run_requests, [r.partition_key for r in tick.run_requests]
        assert tick.skip_reason is not None
        # the cursor now remembers what was audited: the next tick agrees
        again = slow_query_spike(dg.build_sensor_context(instance=instance, resources=resources, cursor=tick.cursor))
        assert not again.run_requests
        assert len(instance.get_runs()) == launched


def test_week_at_a_glance_tables_and_the_stored_report(week_rerun, week_store, capsys):
    store_dsn = week_store
    resources, name, key, first, second, result = week_rerun
    snap_meta = result.asset_materializations_for_node("slow_query_snapshot")[0].metadata
    slow = snap_meta["slow_statements"].value
    assert [c.name for c in slow.schema.columns][:5] == ["statement", "calls", "total_ms", "mean_ms", "rows_per_call"]
    assert slow.records and all(r.data["calls"] > 0 and r.data["mean_ms"] > 0 for r in slow.records)
    # a long statement is cut before a clause, never inside one
    for r in slow.records:
        text = r.data["statement"]
        assert not text.endswith(("= …", "( …", ", …"))
    bench_meta = result.asset_materializations_for_node("benchmarked_gains")[0].metadata
    bench = bench_meta["benchmarks"].value
    assert {"index", "statement", "before_ms", "after_ms", "gain_pct", "regression"} <= {c.name for c in bench.schema.columns}
    flagged = [r.data for r in bench.records if r.data.get("regression")]
    named = bench_meta["regressions"].value
    assert all(f["index"] in named and f["statement"] in named for f in flagged)
    assert f"regressions measured [{name}]" in bench_meta and "snapshot_id" not in bench_meta
    log_meta = result.asset_materializations_for_node("optimization_log")[0].metadata
    indexes = log_meta["indexes"].value
    chosen = [r.data for r in indexes.records if r.data["decision"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["size_mb"] > 0 and "upkeep_ms_per_s" in chosen[0]
    markdown = log_meta["report"].value
    assert "app mean" in markdown and "measured" in markdown and f"/runs/{result.run_id}" in markdown

    # `dbarch report` prints the stored report again: the same text, nothing re-audited
    assert cli.main(["report", "--target", name, "--store-dsn", store_dsn]) == 0
    assert capsys.readouterr().out.strip() == markdown.strip()
    assert cli.main(["report", "--target", name, "--week", key.keys_by_dimension["week"], "--format", "json",
                     "--store-dsn", store_dsn]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == name and len(data["indexes"]) == 1
    assert cli.main(["report", "--target", name, "--week", "2020-01-01", "--store-dsn", store_dsn]) == 2
    assert "no stored report" in capsys.readouterr().err
    assert cli.main(["report", "--target", "nosuch", "--store-dsn", store_dsn]) == 2
    assert "unknown target 'nosuch'" in capsys.readouterr().err


def test_similar_is_fast_from_the_cache_and_ranks_serving_indexes_first(week_rerun, week_store):
    store_dsn = week_store
    import subprocess
    import sys
    import time

    from dbarch_pipeline import similar

    statement = "SELECT id, name, plan FROM users WHERE email = $1"
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        store.ensure_schema(conn)
        first = similar.nearest(conn, statement, limit=10, min_similarity=0.0)
        rows = first["rows"]
        # an expression index on lower(email) cannot serve `email = $1`: never ranked above one that can
        serving = [r["serves"] for r in rows]
        assert serving == sorted(serving, reverse=True)
        assert all(r["target"] for r in rows)
        cut = similar.nearest(conn, statement, limit=10, min_similarity=0.95)["rows"]
        assert all(r["similarity"] >= 0.95 for r in cut) and len(cut) <= len(rows)
    # what serving means: the index's leading key is what the statement filters, joins or sorts on,
    # in the same form
    lower_ix = {"ddl": 'CREATE INDEX "users_lower_email_idx" ON "public"."users" ((lower("email")))',
                "fingerprint": "x"}
    plain_ix = {"ddl": 'CREATE INDEX "users_email_idx" ON "public"."users" ("email")', "fingerprint": "y"}
    for sql_text, lower_serves, plain_serves in (
            ("SELECT id FROM users WHERE email = $1", False, True),
            ("SELECT id FROM users WHERE lower(email) = lower($1)", True, False),
            ("SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = $1", False, True),
            ("SELECT id FROM users WHERE country = $1 ORDER BY email LIMIT 5", False, True),
            ("SELECT id FROM courses WHERE title = $1", False, False)):
        keys = similar.usable_keys(sql_text)
        assert similar.can_serve(keys, lower_ix, "own") is lower_serves, sql_text
        assert similar.can_serve(keys, plain_ix, "own") is plain_serves, sql_text
    # a second call in a new process: the statement's vector comes from the store, the model (and
    # torch) is never loaded
    code = ("import sys, time; t = time.perf_counter(); from dbarch_pipeline import cli; "
            f"rc = cli.main(['similar', {statement!r}, '--store-dsn', {store_dsn!r}, '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', round(time.perf_counter() - t, 2), rc)")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    tail = done.stdout.strip().splitlines()[-1].split()
    assert tail[0] == "NO-TORCH" and tail[2] == "0", done.stdout
    print(f"similar, second call: {tail[1]} s in-process, {time.perf_counter() - t:.2f} s with interpreter start")


def test_every_cli_option_has_help():
    import argparse

    parser = cli.build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "dbarch")
    assert not missing, missing


def test_chosen_again_a_superseded_row_is_current_again(week_rerun, week_store):
    """Runs last among the tests of week_rerun: it audits the week once more."""
    store_dsn = week_store
    resources, name, key, first, second, _ = week_rerun
    materialize_audit(resources, partition_key=key)
    third = _current(store_dsn, name)
    per_statement = Counter((fp, kind) for fp, kind, _ddl, _status in third)
    assert max(per_statement.values()) == 1
    assert len(third) >= len(second)


def test_a_declined_recommendation_stays_declined_and_unpublished(week_rerun, week_store, capsys):
    """Runs after the re-runs: a person declines the current row; a further run keeps it declined."""
    resources, name, key, *_ = week_rerun
    store_dsn = week_store
    assert cli.main(["optimizations", "--store-dsn", store_dsn, "--target", name, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert cli.main(["optimizations", "--store-dsn", store_dsn, "--decline", row["id"]]) == 0
    assert cli.main(["optimizations", "--store-dsn", store_dsn, "--decline", "not-an-id"]) == 2
    materialize_audit(resources, partition_key=key)
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        status = conn.execute("SELECT status FROM dbarch.optimization_log WHERE id = %s", (row["id"],)).fetchone()[0]
        assert status == "declined"
        store.ensure_schema(conn)
        picked = publish.select(conn, target=name, settings=publish.PublishSettings(min_confidence=0.0))
    assert row["id"] not in {str(r["id"]) for r in picked.eligible}
