"""Prometheus metrics from the store through prometheus_client: counters per (database, week) for
slow statements and current recommendations, one confidence and gain series per current
recommendation (superseded rows have none), the low-confidence count with its 0.6 boundary on many
generated confidences, realized gains only when measured, label values round-tripping through the
exposition format, the atomic textfile (also when DBARCH_METRICS_TEXTFILE is set), and
`dbarch metrics` printing, writing and serving on a free port."""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dbarch_pipeline import metrics, metrics_cli
from dbarch_pipeline.memory import store
from dbarch_pipeline.models import SlowQuery, Thresholds
from dbarch_pipeline.resources.postgres import StoreDatabase

WEEK = datetime(2025, 6, 1, tzinfo=timezone.utc)   # a Sunday
OLD, NEW = "2025-05-25", "2025-06-01"


def _query(i: int) -> SlowQuery:
    return SlowQuery(queryid=i, query_text=f"SELECT * FROM t{i} WHERE a = $1", fingerprint=f"fp{i}", calls=10,
                     total_exec_ms=100.0, mean_exec_ms=10.0, rows=10, shared_blks_hit=1, shared_blks_read=1,
                     captured_at=WEEK)


def snapshot(conn, target: str, week: datetime, n: int) -> int:
    return store.create_snapshot(conn, target=target, database=target, captured_at=week + timedelta(days=7),
                                 stats_reset=None, thresholds=Thresholds(), queries=[_query(i) for i in range(n)],
                                 skipped={}, run_id=None, partition_key=f"{target}|{week.date()}",
                                 window=(week, week + timedelta(days=7)))


def log_row(snapshot_id: int, target: str, i: int, gain: float | None, confidence: float | None,
            status: str = "proposed", kind: str = "index") -> dict:
    return {"target": target, "fingerprint": f"fp{i}", "queryid": i, "query_text": f"SELECT {i}",
            "recommendation": "r", "kind": kind, "ddl": f"CREATE INDEX i{i} ON t (c)",
            "performance_gain": gain, "estimated_gain": gain, "confidence": confidence, "embedding": None,
            "evidence": {}, "snapshot_id": snapshot_id, "status": status}


def fill(dsn: str) -> dict[str, str]:
    """Target `app`: an older week (2 slow, 1 current row, 1 superseded) and the latest (3 slow, 2 rows,
    one with a realized gain); target `quiet`: audited, nothing recommended. Returns ids by fingerprint."""
    with StoreDatabase(dsn=dsn).connect() as s:
        old = snapshot(s, "app", WEEK - timedelta(days=7), 2)
        new = snapshot(s, "app", WEEK, 3)
        snapshot(s, "quiet", WEEK, 0)
        store.write_optimization_log(s, [log_row(old, "app", 9, 10.0, 0.2), log_row(old, "app", 8, 30.0, 0.3,
                                                                                      status="superseded"),
                                         log_row(new, "app", 1, 80.0, 0.9),
                                         log_row(new, "app", 2, 60.0, 0.7, kind="rewrite")])
        ids = {fp: str(i) for fp, i in s.execute("SELECT fingerprint, id FROM dbarch.optimization_log")}
        store.record_realized_gain(s, ids["fp1"], 75.0, datetime.now(timezone.utc))
    return ids


@pytest.fixture()
def filled_store(store_dsn):
    return store_dsn, fill(store_dsn)


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from the exposition text, parsed by prometheus_client."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def week(database: str, week_: str) -> tuple:
    return tuple(sorted({"database": database, "week": week_}.items()))


def rec(database: str, week_: str, rec_id: str, kind: str = "index") -> tuple:
    return tuple(sorted({"database": database, "week": week_, "recommendation": rec_id, "kind": kind}.items()))


def test_store_metrics_per_week_and_per_recommendation(filled_store):
    dsn, ids = filled_store
    with StoreDatabase(dsn=dsn).connect() as s:
        text = metrics.render_store(s)
    got = samples(text)
    assert got[("db_architect_slow_queries_total", week("app", OLD))] == 2
    assert got[("db_architect_slow_queries_total", week("app", NEW))] == 3
    assert got[("db_architect_slow_queries_total", week("quiet", NEW))] == 0
    # current rows only: the superseded one is neither counted nor given series
    assert got[("db_architect_recommendations_total", week("app", OLD))] == 1
    assert got[("db_architect_recommendations_total", week("app", NEW))] == 2
    assert got[("db_architect_recommendations_total", week("quiet", NEW))] == 0
    assert not [k for k in got if ("recommendation", ids["fp8"]) in k[1]]
    assert got[("db_architect_confidence_score", rec("app", NEW, ids["fp1"]))] == 0.9
    assert got[("db_architect_confidence_score", rec("app", NEW, ids["fp2"], "rewrite"))] == 0.7
    assert got[("db_architect_low_confidence_recommendations", week("app", OLD))] == 1
    assert got[("db_architect_low_confidence_recommendations", week("app", NEW))] == 0
    assert got[("db_architect_performance_gain_percent", rec("app", NEW, ids["fp1"]))] == 80.0
    # realized only where measured: a missing gain is no sample, never a misleading 0
    assert got[("db_architect_realized_gain_percent", rec("app", NEW, ids["fp1"]))] == 75.0
    assert [k for k in got if k[0] == "db_architect_realized_gain_percent"] == [
        ("db_architect_realized_gain_percent", rec("app", NEW, ids["fp1"]))]
    for name, kind, _help in metrics.METRICS:
        assert f"# TYPE {name} {kind}" in text, name
    assert "_created" not in text


def test_low_confidence_boundary_on_generated_confidences():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    recs = []
    for i in range(300):
        confidence = rng.choice([round(rng.random(), 3), metrics.LOW_CONFIDENCE, None])
        recs.append({"id": f"r{i}", "target": rng.choice(["a", "b"]), "week": rng.choice([OLD, NEW]),
                     "kind": "index", "confidence": confidence, "performance_gain": None, "realized_gain": None})
    fams = {f.name: f for f in metrics.families([], recs)}
    for sample in fams["db_architect_low_confidence_recommendations"].samples:
        expected = sum(1 for r in recs if (r["target"], r["week"]) == (sample.labels["database"], sample.labels["week"])
                       and r["confidence"] is not None and r["confidence"] < metrics.LOW_CONFIDENCE)
        assert sample.value == expected, f"seed {seed}"
    assert len(fams["db_architect_confidence_score"].samples) == sum(r["confidence"] is not None for r in recs)


def test_label_values_round_trip():
    name = 'a"b\\c\nd'
    text = "".join(f"{line}\n" for family in metrics.families(
        [{"target": name, "week": NEW, "slow_queries": 4}], []) for line in _lines(family))
    assert samples(text)[("db_architect_slow_queries_total", week(name, NEW))] == 4


def _lines(family) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    class One:
        def collect(self):
            yield family

    registry = CollectorRegistry()
    registry.register(One())
    return generate_latest(registry).decode().splitlines()


def test_textfile_is_written_atomically_when_configured(filled_store, tmp_path, monkeypatch):
    dsn, _ = filled_store
    path = tmp_path / "textfile" / "dbarch.prom"
    with StoreDatabase(dsn=dsn).connect() as s:
        monkeypatch.delenv(metrics.TEXTFILE_ENV, raising=False)
        assert metrics.write_textfile_if_configured(s) is None
        monkeypatch.setenv(metrics.TEXTFILE_ENV, str(path))
        assert metrics.write_textfile_if_configured(s) == path
        expected = metrics.render_store(s)
    assert path.read_text() == expected
    assert [p.name for p in path.parent.iterdir()] == ["dbarch.prom"]   # no temporary file left


def test_metrics_command_prints_and_writes_the_textfile(filled_store, tmp_path, capsys):
    dsn, _ = filled_store
    parser = argparse.ArgumentParser(prog="dbarch")
    metrics_cli.register(parser.add_subparsers(dest="command"))
    path = tmp_path / "dbarch.prom"
    args = parser.parse_args(["metrics", "--textfile", str(path), "--store-dsn", dsn])
    assert args.func(args) == 0
    assert samples(path.read_text())[("db_architect_recommendations_total", week("app", NEW))] == 2
    assert str(path) in capsys.readouterr().out
    args = parser.parse_args(["metrics", "--store-dsn", dsn])
    assert args.func(args) == 0
    assert "# TYPE db_architect_slow_queries_total counter" in capsys.readouterr().out


def test_metrics_command_serves_on_a_free_port(filled_store):
    dsn, _ = filled_store
    proc = subprocess.Popen([sys.executable, "-m", "dbarch_pipeline.cli", "metrics", "--serve", "0",
                             "--store-dsn", dsn], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving metrics on http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert samples(body)[("db_architect_slow_queries_total", week("app", NEW))] == 3
    finally:   # the server runs until stopped; how it stops is not what this test is about
        proc.kill()
        proc.wait(timeout=60)
