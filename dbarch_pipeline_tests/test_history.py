"""History and partitions: a week's activity from capture differences (resets restart the count,
nothing goes negative), a backfill over three past weeks from stored captures alone gives the same
numbers as the audits run at the time, and each check fails when its condition is broken and passes
otherwise. Uses Dagster's own tools (`materialize` with partition keys, `instance_for_test`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest

from dbarch_pipeline import demo, history
from dbarch_pipeline.defs import alerts
from dbarch_pipeline.defs.partitions import audit_key, window
from dbarch_pipeline.memory import store
from dbarch_pipeline.run import audit_resources, materialize_audit, register_target

from .conftest import FAST_SETTINGS as AUDIT_SETTINGS, fresh_database

FAST_SETTINGS = {**AUDIT_SETTINGS, "runs": 1, "param_sets": 2}

T0 = datetime(2026, 10, 4, tzinfo=timezone.utc)   # a Sunday


def cap(cid: int, hours: float, reset: datetime | None = T0 - timedelta(days=30), dealloc: int = 0) -> dict:
    return {"capture_id": cid, "captured_at": T0 + timedelta(hours=hours), "stats_reset": reset,
            "dealloc": dealloc, "max_entries": 5000, "entries": 10}


def row(calls: int, total: float, since: datetime | None = None) -> dict:
    return {"query_text": "SELECT 1 FROM t WHERE a = $1", "calls": calls, "total_exec_ms": total, "rows": calls,
            "shared_blks_hit": 0, "shared_blks_read": 0, "stats_since": since}


WEEK = (T0, T0 + timedelta(days=7))


def test_activity_is_the_sum_of_increases_from_the_baseline():
    caps = [cap(1, -1), cap(2, 24), cap(3, 48)]
    rows = {1: {7: row(100, 1000)}, 2: {7: row(150, 1600)}, 3: {7: row(180, 2000)}}
    act = history.compute_activity(caps, rows, {}, *WEEK)
    assert act.baseline and act.captures == 2
    assert act.statements[7]["calls"] == 80 and act.statements[7]["total_exec_ms"] == 1000
    assert act.resets == [] and act.notes() == []


def test_a_full_reset_restarts_the_count_and_is_noted():
    """pg_stat_statements_info.stats_reset moved between two captures (a server-wide reset)."""
    reset = T0 + timedelta(hours=30)
    caps = [cap(1, -1), cap(2, 24), cap(3, 31, reset=reset)]
    rows = {1: {7: row(100, 1000)}, 2: {7: row(150, 1500)}, 3: {7: row(20, 400)}}
    act = history.compute_activity(caps, rows, {}, *WEEK)
    assert act.statements[7]["calls"] == 50 + 20          # before the reset, then since it
    assert act.statements[7]["total_exec_ms"] == 500 + 400
    assert act.resets[0]["kind"] == "stats_reset" and act.resets[0]["uncaptured_seconds"] == 6 * 3600
    assert any("was reset" in n for n in act.notes())


def test_a_statement_reset_or_eviction_restarts_only_that_statement():
    caps = [cap(1, -1), cap(2, 24), cap(3, 48), cap(4, 72)]
    rows = {1: {7: row(100, 1000), 8: row(10, 10)},
            2: {7: row(40, 300), 8: row(20, 20)},     # 7 went down: reset
            3: {8: row(30, 30)},                        # 7 evicted
            4: {7: row(5, 50), 8: row(40, 40)}}         # 7 back, counting anew
    act = history.compute_activity(caps, rows, {}, *WEEK)
    assert act.statements[7]["calls"] == 40 + 5
    assert act.statements[8]["calls"] == 30
    assert all(v >= 0 for s in act.statements.values() for k, v in s.items() if k in history.COUNTERS)
    assert sum(1 for r in act.resets if r["kind"] == "statement") == 2


def test_without_a_baseline_counters_are_taken_as_they_are():
    act = history.compute_activity([cap(1, 5), cap(2, 50)], {1: {7: row(10, 100)}, 2: {7: row(30, 300)}}, {}, *WEEK)
    assert not act.baseline and act.statements[7]["calls"] == 30
    assert any("no capture before the window" in n for n in act.notes())


def test_table_writes_from_capture_differences():
    t = {"n_tup_ins": 0, "n_tup_upd": 0, "n_tup_hot_upd": 0, "n_tup_del": 0}
    tables = {1: {"public.t": {**t, "n_tup_ins": 100}}, 2: {"public.t": {**t, "n_tup_ins": 160, "n_tup_upd": 10}}}
    act = history.compute_activity([cap(1, -1), cap(2, 24)], {1: {}, 2: {}}, tables, *WEEK)
    assert act.tables["public.t"]["rows"] == 70 and act.tables["public.t"]["seconds"] == 25 * 3600


# -- with a real target, through Dagster ----------------------------------------------------------------

QUERIES = {
    "by_owner": "SELECT * FROM items WHERE owner = %s",
    "by_label": "SELECT count(*) FROM items WHERE label = %s",
}


@pytest.fixture()
def items_db(server) -> str:
    url = fresh_database("dbarch_test_history")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, label text NOT NULL)")
        conn.execute("INSERT INTO items SELECT g, g % 3000, 'label ' || (g % 7000) FROM generate_series(1, 60000) g")
        conn.execute("VACUUM ANALYZE items")
        demo.reset_statistics(conn)
    return url


def _reset_database_statements(url: str) -> None:
    # this database only: a server-wide reset would also wipe the other tests' statistics
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")


def _work(url: str, calls: dict[str, int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name, n in calls.items():
            for i in range(n):
                arg = i % 3000 if name == "by_owner" else f"label {i}"
                conn.execute(QUERIES[name], (arg,)).fetchall()


def _snapshot_numbers(store_dsn: str, target: str, key: str) -> dict:
    with psycopg.connect(store_dsn) as conn:
        snap = store.latest_snapshot(conn, target, key)
        return {q.fingerprint: (q.calls, round(q.total_exec_ms, 6)) for q in store.snapshot_queries(conn, snap["snapshot_id"])}


def _capture(url: str, store_dsn: str, target: str, when: datetime) -> None:
    with psycopg.connect(url, autocommit=True) as t, psycopg.connect(store_dsn, autocommit=True) as s:
        store.apply_schema(s)
        history.capture(t, s, target=target, now=when)


def test_backfill_of_three_weeks_from_captures_matches_the_live_audits(items_db, store_dsn):
    resources = audit_resources(target_dsn=items_db, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_calls": 2})
    name = resources["target"].target_name()
    weeks = ["2026-10-04", "2026-10-11", "2026-10-18"]
    live = {}
    with dg.instance_for_test() as instance:
        register_target(instance, name)
        for i, week in enumerate(weeks):
            start, _ = window(week)
            _capture(items_db, store_dsn, name, start + timedelta(hours=1))
            _work(items_db, {"by_owner": 4 + 2 * i, "by_label": 3 + i})
            _capture(items_db, store_dsn, name, start + timedelta(days=3))
            key = audit_key(name, week)
            assert materialize_audit(resources, instance=instance, partition_key=key).success
            live[week] = _snapshot_numbers(store_dsn, name, key)
        # the target forgets everything; only the store remembers
        _reset_database_statements(items_db)
        for week in weeks:
            key = audit_key(name, week)
            result = materialize_audit(resources, instance=instance, partition_key=key)
            assert result.success
            assert _snapshot_numbers(store_dsn, name, key) == live[week]
        with psycopg.connect(store_dsn) as conn:
            per_week = conn.execute("SELECT partition_key, count(*) FROM dbarch.snapshot WHERE target = %s "
                                    "GROUP BY 1", (name,)).fetchall()
    # re-running and backfilling replaced each partition: one snapshot per week
    assert sorted(n for _, n in per_week) == [1, 1, 1]
    owner = [v for v in live[weeks[2]].values() if v[0] == 8]
    assert owner, live[weeks[2]]   # the third week's own calls, not the cumulative total


def test_a_reset_inside_the_week_is_detected_and_a_lost_gap_fails_the_check(items_db, store_dsn):
    resources = audit_resources(target_dsn=items_db, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_calls": 2})
    name = resources["target"].target_name()
    week = "2026-10-25"
    start, _ = window(week)
    _capture(items_db, store_dsn, name, start + timedelta(hours=1))
    _work(items_db, {"by_owner": 6})
    _capture(items_db, store_dsn, name, start + timedelta(hours=2))
    _reset_database_statements(items_db)   # each statement's stats_since moves to now
    _work(items_db, {"by_owner": 3})
    _capture(items_db, store_dsn, name, start + timedelta(days=6))
    with dg.instance_for_test() as instance:
        register_target(instance, name)
        result = materialize_audit(resources, instance=instance, partition_key=audit_key(name, week),
                                   raise_on_error=False)
    meta = result.asset_materializations_for_node("slow_query_snapshot")[0].metadata
    assert meta["summary"].value["resets"] >= 1
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    # the reset came long after the last capture (the captures above are dated in the past)
    assert checks["pg_stat_statements_healthy"] is False
    numbers = _snapshot_numbers(store_dsn, name, audit_key(name, week))
    assert sorted(c for c, _ in numbers.values()) == [9]   # 6 before the reset + 3 after


def test_healthy_week_passes_every_snapshot_check(items_db, store_dsn):
    resources = audit_resources(target_dsn=items_db, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_calls": 2})
    name = resources["target"].target_name()
    week = "2026-11-01"
    start, _ = window(week)
    _capture(items_db, store_dsn, name, start + timedelta(hours=1))
    _work(items_db, {"by_owner": 5})
    _capture(items_db, store_dsn, name, start + timedelta(hours=2))
    with dg.instance_for_test() as instance:
        register_target(instance, name)
        result = materialize_audit(resources, instance=instance, partition_key=audit_key(name, week))
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["pg_stat_statements_healthy"] and checks["pg_stat_statements_capacity"]
    assert checks["week_over_week_regressions"] and checks["target_schema_unchanged"]
    assert checks["recommendations_logged_with_embeddings"]


@pytest.fixture()
def alert_inbox(webhook, monkeypatch):
    """The local receiver (conftest) set as DBARCH_ALERT_WEBHOOK_URL: what it received."""
    url, received = webhook
    monkeypatch.setenv("DBARCH_ALERT_WEBHOOK_URL", url)
    return received


def test_week_over_week_regression_names_the_statement(items_db, store_dsn, alert_inbox):
    """The WARN check names the target, the week and the statement, and reaches the webhook once
    per target and week, with a link to the run."""
    resources = audit_resources(target_dsn=items_db, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_calls": 2})
    name = resources["target"].target_name()
    with dg.instance_for_test() as instance:
        register_target(instance, name)
        for week, rows in (("2026-09-06", 0), ("2026-09-13", 300_000)):
            start, _ = window(week)
            if rows:
                with psycopg.connect(items_db, autocommit=True) as conn:   # ten times the data: slower
                    conn.execute("INSERT INTO items SELECT g, g %% 3000, 'label ' || (g %% 7000) "
                                 "FROM generate_series(60001, %s) g", (60_000 + rows,))
                    conn.execute("VACUUM ANALYZE items")
            _capture(items_db, store_dsn, name, start + timedelta(hours=1))
            _work(items_db, {"by_label": 4})
            _capture(items_db, store_dsn, name, start + timedelta(hours=2))
            result = materialize_audit(resources, instance=instance, partition_key=audit_key(name, week))
        evaluation = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
        regression = evaluation["week_over_week_regressions"]
        assert regression.passed is False and regression.severity == dg.AssetCheckSeverity.WARN
        assert "label" in regression.description and "slower" in regression.description
        assert regression.description.startswith(f"[{name}, week of 2026-09-13]")
        alerts_sent = [a for a in alert_inbox if a["check"] == "week_over_week_regressions"]
        assert len(alerts_sent) == 1
        alert = alerts_sent[0]
        assert (alert["target"], alert["week"], alert["asset"]) == (name, "2026-09-13", "slow_query_snapshot")
        assert alert["run_id"] == result.run_id and alert["run_url"].endswith(f"/runs/{result.run_id}")
        assert any("label" in s["query"] for s in alert["statements"]) and "label" in alert["description"]
        # the same week audited again: the check fails again, the alert is not sent twice
        again = materialize_audit(resources, instance=instance, partition_key=audit_key(name, "2026-09-13"))
        assert not {e.asset_check_key.name: e for e in again.get_asset_check_evaluations()}[
            "week_over_week_regressions"].passed
        assert len([a for a in alert_inbox if a["check"] == "week_over_week_regressions"]) == 1


def test_capacity_and_confidence_alerts_fail_only_when_broken(store_dsn):
    def snap(entries: int, evicted: int) -> dict:
        return {"target": "t", "snapshot_id": -1, "window_start": None,
                "history": {"resets": [], "entries": entries, "max_entries": 5000, "deallocations": evicted}}
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        store.apply_schema(conn)
        ok = {c.check_name: c.passed for c in alerts.snapshot_checks(conn, snap(100, 0))}
        full = {c.check_name: c.passed for c in alerts.snapshot_checks(conn, snap(4800, 0))}
        evicting = {c.check_name: c.passed for c in alerts.snapshot_checks(conn, snap(100, 12))}
        assert ok["pg_stat_statements_capacity"] and not full["pg_stat_statements_capacity"]
        assert not evicting["pg_stat_statements_capacity"]

        row = {"target": "t", "fingerprint": "f", "queryid": 1, "query_text": "SELECT 1", "recommendation": "r",
               "kind": "index", "ddl": "CREATE INDEX a ON t (a)", "performance_gain": 50.0, "estimated_gain": 40.0,
               "evidence": {}, "snapshot_id": 99}
        store.write_optimization_log(conn, [{**row, "confidence": 0.9}])
        summary = {"snapshot_id": 99, "recommendations": 1, "log_rows": 1, "log_rows_with_embedding": 0}
        checks = {c.check_name: c.passed for c in alerts.log_checks(conn, "t", "t|2026-01-04", summary)}
        assert checks["low_confidence_recommendations"] and not checks["recommendations_logged_with_embeddings"]
        store.write_optimization_log(conn, [{**row, "confidence": 0.3}])
        checks = {c.check_name: c.passed for c in alerts.log_checks(
            conn, "t", "t|2026-01-04", {**summary, "log_rows_with_embedding": 1})}
        assert not checks["low_confidence_recommendations"] and checks["recommendations_logged_with_embeddings"]


def test_schema_check_blocks_the_log_when_the_sandbox_changes(demo_target, store_dsn, monkeypatch):
    """Fault injection: an experiment that leaks a table. The blocking check fails and the log is not
    written from the tainted run."""
    from dbarch_pipeline import audit

    real = audit.benchmark_candidates

    def leaky(sandbox_conn, store_conn, **kwargs):
        out = real(sandbox_conn, store_conn, **kwargs)
        sandbox_conn.execute("CREATE TABLE leaked_by_a_bug (id int)")
        return out

    monkeypatch.setattr(audit, "benchmark_candidates", leaky)
    try:
        result = materialize_audit(audit_resources(target_dsn=demo_target, store_dsn=store_dsn,
                                                   settings=FAST_SETTINGS), raise_on_error=False)
    finally:
        with psycopg.connect(demo_target, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS leaked_by_a_bug")
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["target_schema_unchanged"] is False
    assert not result.asset_materializations_for_node("optimization_log")
