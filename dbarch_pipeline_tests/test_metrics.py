"""Prometheus metrics from the store: the exposition text per target (latest audited week, log rows,
means left out when there is nothing to average), the atomic textfile for node_exporter (also when
DBARCH_METRICS_TEXTFILE is set), the HTTP endpoint, and the `dbarch metrics` command."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from dbarch_pipeline import metrics, metrics_cli
from dbarch_pipeline.memory import store
from dbarch_pipeline.models import SlowQuery, Thresholds
from dbarch_pipeline.resources.postgres import StoreDatabase

WEEK = datetime(2025, 6, 1, tzinfo=timezone.utc)


def _query(i: int) -> SlowQuery:
    return SlowQuery(queryid=i, query_text=f"SELECT * FROM t{i} WHERE a = $1", fingerprint=f"fp{i}", calls=10,
                     total_exec_ms=100.0, mean_exec_ms=10.0, rows=10, shared_blks_hit=1, shared_blks_read=1,
                     captured_at=WEEK)


def _snapshot(conn, target: str, week: datetime, n: int) -> int:
    return store.create_snapshot(conn, target=target, database=target, captured_at=week + timedelta(days=7),
                                 stats_reset=None, thresholds=Thresholds(), queries=[_query(i) for i in range(n)],
                                 skipped={}, run_id=None, partition_key=f"{target}|{week.date()}",
                                 window=(week, week + timedelta(days=7)))


def _log(snapshot_id: int, target: str, i: int, gain: float, confidence: float) -> dict:
    return {"target": target, "fingerprint": f"fp{i}", "queryid": i, "query_text": f"SELECT {i}",
            "recommendation": "r", "kind": "index", "ddl": f"CREATE INDEX i{i} ON t (c)",
            "performance_gain": gain, "estimated_gain": gain, "confidence": confidence, "embedding": None,
            "evidence": {}, "snapshot_id": snapshot_id}


@pytest.fixture()
def filled_store(store_dsn):
    """Target `app`: an older week (2 slow, 1 row) and the latest (3 slow, 2 rows, one realized gain);
    target `quiet`: audited, nothing recommended."""
    with StoreDatabase(dsn=store_dsn).connect() as s:
        old = _snapshot(s, "app", WEEK - timedelta(days=7), 2)
        new = _snapshot(s, "app", WEEK, 3)
        _snapshot(s, "quiet", WEEK, 0)
        store.write_optimization_log(s, [_log(old, "app", 9, 10.0, 0.2),
                                         _log(new, "app", 1, 80.0, 0.9), _log(new, "app", 2, 60.0, 0.7)])
        row = next(r for r in store.list_optimizations(s) if r["fingerprint"] == "fp1")
        store.record_realized_gain(s, row["id"], 75.0, datetime.now(timezone.utc))
    return store_dsn


def _samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_render_reports_the_latest_week_per_target(filled_store):
    with StoreDatabase(dsn=filled_store).connect() as s:
        text = metrics.render_store(s)
    samples = _samples(text)
    assert samples['db_architect_slow_queries_total{database="app"}'] == 3
    assert samples['db_architect_recommendations_total{database="app"}'] == 3
    assert samples['db_architect_confidence_score{database="app"}'] == pytest.approx(0.8)
    assert samples['db_architect_performance_gain_percent{database="app"}'] == pytest.approx(70.0)
    assert samples['db_architect_realized_gain_percent{database="app"}'] == 75.0
    assert samples['db_architect_slow_queries_total{database="quiet"}'] == 0
    assert samples['db_architect_recommendations_total{database="quiet"}'] == 0
    # nothing to average for `quiet`: no sample rather than a misleading 0
    assert 'db_architect_confidence_score{database="quiet"}' not in samples
    for metric in metrics.METRICS:
        assert f"# HELP {metric.name} " in text and f"# TYPE {metric.name} gauge" in text


def test_label_values_are_escaped():
    text = metrics.render([{"target": 'a"b\\c', "slow_queries": 1}])
    assert 'db_architect_slow_queries_total{database="a\\"b\\\\c"} 1' in text


def test_textfile_is_written_atomically_when_configured(filled_store, tmp_path, monkeypatch):
    path = tmp_path / "textfile" / "dbarch.prom"
    with StoreDatabase(dsn=filled_store).connect() as s:
        monkeypatch.delenv(metrics.TEXTFILE_ENV, raising=False)
        assert metrics.write_textfile_if_configured(s) is None
        monkeypatch.setenv(metrics.TEXTFILE_ENV, str(path))
        assert metrics.write_textfile_if_configured(s) == path
        expected = metrics.render_store(s)
    assert path.read_text() == expected
    assert [p.name for p in path.parent.iterdir()] == ["dbarch.prom"]   # no temporary file left


def test_served_metrics_answer_on_a_free_port(filled_store):
    def render() -> str:
        with StoreDatabase(dsn=filled_store).connect() as s:
            return metrics.render_store(s)

    server = metrics.serve(render, port=0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = response.read().decode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/elsewhere", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert body == render()


def test_metrics_command_writes_the_textfile(filled_store, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="dbarch")
    metrics_cli.register(parser.add_subparsers(dest="command"))
    path = tmp_path / "dbarch.prom"
    args = parser.parse_args(["metrics", "--textfile", str(path), "--store-dsn", filled_store])
    assert args.func(args) == 0
    assert 'db_architect_recommendations_total{database="app"} 3' in path.read_text()
    assert str(path) in capsys.readouterr().out
    args = parser.parse_args(["metrics", "--store-dsn", filled_store])
    assert args.func(args) == 0
    assert "# TYPE db_architect_slow_queries_total gauge" in capsys.readouterr().out
