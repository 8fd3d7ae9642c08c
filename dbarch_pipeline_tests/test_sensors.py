"""The sensors, evaluated with Dagster's own test tools against the embedded PostgreSQL: the spike
sensor requests one audit per new slow statement and nothing twice; the applied-optimization sensor
notices a recommended index created for real on the target and records its realized gain from the
captures; the similar-optimization lookup puts realized gains first; the run-failure sensor posts its
JSON alert to a local webhook. Each test audits its own small database, never the shared demo."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import psycopg

from dbarch_pipeline import history, watch
from dbarch_pipeline.advisor.candidates import ddl_text
from dbarch_pipeline.defs.partitions import TARGETS_NAME, audit_key, week_of
from dbarch_pipeline.defs.sensors import applied_optimizations, run_failure_alert, slow_query_spike
from dbarch_pipeline.memory import store
from dbarch_pipeline.models import IndexCandidate
from dbarch_pipeline.resources.audit_settings import AuditSettingsResource
from dbarch_pipeline.resources.postgres import StoreDatabase, TargetDatabase
from dbarch_pipeline.run import materialize_audit

from .conftest import FAST_SETTINGS, fresh_database

ORDERS_ROWS = 60_000
BY_CUSTOMER = "SELECT id, amount FROM orders WHERE customer_id = %s"
LARGE_AMOUNTS = "SELECT count(*) FROM orders WHERE amount > %s"


def _orders_target(name: str) -> str:
    """A database with one unindexed 60k-row table: a lookup by customer scans all of it."""
    url = fresh_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO orders (id, customer_id, amount) SELECT g, g %% 5000, (g %% 997) * 1.5 "
                     "FROM generate_series(1, %s) AS g", (ORDERS_ROWS,))
        conn.execute("ANALYZE orders")
    # the bulk load is not the workload: without a reset its 60k inserts would weigh as write upkeep
    # against the index (the closed session above has flushed its counters)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_reset()")
    return url


def _run(url: str, statement: str, calls: int, values=lambda: random.randrange(5000)) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(calls):
            conn.execute(statement, (values(),)).fetchall()


def _database(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


# -- slow_query_spike --------------------------------------------------------------------------------

def test_spike_sensor_requests_one_audit_per_new_slow_statement(server, store_dsn):
    url = _orders_target("dbarch_test_spike")
    name = _database(url)
    resources = {"target": TargetDatabase(dsn=url), "store": StoreDatabase(dsn=store_dsn),
                 "audit_settings": AuditSettingsResource(**FAST_SETTINGS)}
    _run(url, BY_CUSTOMER, 10)
    with dg.instance_for_test() as instance:
        # a registered target that is not configured anywhere is skipped, not fatal
        instance.add_dynamic_partitions(TARGETS_NAME, [name, "unknown_target"])

        first = slow_query_spike(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert str(request.partition_key) == str(audit_key(name, week_of(datetime.now(timezone.utc))))
        assert request.tags["dbarch/trigger"] == "slow_query_spike"
        assert list(json.loads(first.cursor)) == [name]

        again = slow_query_spike(dg.build_sensor_context(instance=instance, resources=resources,
                                                         cursor=first.cursor))
        assert not again.run_requests and again.skip_reason is not None

        _run(url, LARGE_AMOUNTS, 6, values=lambda: random.randrange(1000))
        third = slow_query_spike(dg.build_sensor_context(instance=instance, resources=resources,
                                                         cursor=again.cursor))
        assert len(third.run_requests) == 1
        assert third.run_requests[0].run_key != request.run_key
        assert third.run_requests[0].tags["dbarch/new_statements"] == "1"
        assert len(json.loads(third.cursor)[name]) == len(json.loads(first.cursor)[name]) + 1


def test_spike_cursor_stays_bounded_and_run_keys_are_stable():
    seen = watch.remember({}, "app", [f"fp{i}" for i in range(10)], limit=4)
    assert seen["app"] == ["fp6", "fp7", "fp8", "fp9"]
    assert watch.parse_cursor(watch.dump_cursor(seen, ["app"])) == seen
    assert watch.parse_cursor("not json") == {} and watch.dump_cursor(seen, []) == "{}"
    assert watch.spike_run_key("app", "2025-06-01", ["b", "a"]) == watch.spike_run_key("app", "2025-06-01", ["a", "b"])


# -- applied_optimizations ---------------------------------------------------------------------------

def _log_row(store_dsn: str, row_id: str) -> dict:
    with psycopg.connect(store_dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT status, applied_at, realized_gain, realized_at FROM dbarch.optimization_log "
                            "WHERE id = %s", (row_id,)).fetchone()


def test_applied_sensor_records_applied_at_and_the_realized_gain(server, store_dsn, resources_for):
    url = _orders_target("dbarch_test_applied")
    name = _database(url)
    resources = resources_for(url)
    _run(url, BY_CUSTOMER, 30)
    with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
        history.capture(t, s, target=name, now=datetime.now(timezone.utc) - timedelta(hours=2))
    with dg.instance_for_test() as instance:
        assert materialize_audit(resources, instance).success
        with StoreDatabase(dsn=store_dsn).connect() as s:
            rows = [r for r in store.proposed_optimizations(s) if "customer_id" in r["ddl"]]
        assert len(rows) == 1, rows
        row = rows[0]
        context = lambda: dg.build_sensor_context(  # noqa: E731
            instance=instance, resources={"target": resources["target"], "store": resources["store"]})

        applied_optimizations(context())
        assert _log_row(store_dsn, row["id"])["status"] == "proposed"   # nothing created yet

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(row["ddl"])
        applied_optimizations(context())
        after_apply = _log_row(store_dsn, row["id"])
        assert after_apply["status"] == "applied" and after_apply["applied_at"] is not None

        # one capture after applied_at only starts the "after" window: no gain yet
        with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
            history.capture(t, s, target=name, now=datetime.now(timezone.utc))
        applied_optimizations(context())
        assert _log_row(store_dsn, row["id"])["realized_gain"] is None

        _run(url, BY_CUSTOMER, 20)
        with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
            history.capture(t, s, target=name, now=datetime.now(timezone.utc))
        applied_optimizations(context())
    final = _log_row(store_dsn, row["id"])
    assert final["applied_at"] == after_apply["applied_at"]
    assert final["realized_gain"] > 50 and final["realized_at"] is not None


def test_indexes_on_the_target_are_recognised_by_name_or_equivalent_definition(server):
    """Recommendations rendered by the advisor itself, against indexes read from a real catalog."""
    url = fresh_database("dbarch_test_catalog", pg_stat_statements=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int, user_id int, ts timestamptz, kind text, email text, meta jsonb)")
        conn.execute("CREATE INDEX by_user_and_time ON events (user_id, ts)")          # another name
        conn.execute("CREATE INDEX events_on_ts ON events (ts)")                        # no INCLUDE
        conn.execute("CREATE INDEX by_email ON events (lower(email))")
        conn.execute("CREATE INDEX by_kind ON events (kind)")                           # default opclass
        conn.execute("CREATE INDEX rare_kind ON events (user_id) WHERE kind = 'refund'")
        conn.execute("CREATE INDEX by_meta ON events USING gin (meta jsonb_path_ops)")
        existing = watch.target_indexes(conn, ["events"])

    def how(columns, **spec):
        cand = IndexCandidate("public", "events", tuple(columns), "test", **spec)
        return watch.applied_how(watch.parse_index_ddl(ddl_text(cand)), existing)

    assert how(["user_id", "ts"]) == "equivalent index by_user_and_time"
    assert how(["ts", "user_id"]) is None                       # key order matters
    assert how(["ts"]) == "equivalent index events_on_ts"
    # the measured plan was an index-only scan: an index without the INCLUDE column is not it
    assert how(["ts"], include=("kind",)) is None
    assert how(["lower(email)"]) == "equivalent index by_email"
    assert how(["kind"], opclasses=("text_pattern_ops",)) is None
    assert how(["kind"]) == "equivalent index by_kind"
    assert how(["user_id"], where=("kind", "refund")) == "equivalent index rare_kind"
    assert how(["user_id"], where=("kind", "chargeback")) is None
    assert how(["meta"], method="gin", opclasses=("jsonb_path_ops",)) == "equivalent index by_meta"
    assert how(["meta"], method="gin") is None                  # jsonb_ops is another operator class
    assert watch.parse_index_ddl("DROP INDEX foo") is None


# -- similar optimizations ---------------------------------------------------------------------------

def _unit(*weights: float) -> np.ndarray:
    v = np.zeros(384, dtype=np.float32)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


def test_similar_lookup_puts_realized_gains_first(store_dsn):
    rows = [{"target": "app", "fingerprint": fp, "queryid": i, "query_text": f"SELECT {i}", "recommendation": "r",
             "kind": "index", "ddl": f"CREATE INDEX i{i} ON t (c{i})", "performance_gain": 50.0,
             "estimated_gain": 40.0, "confidence": 0.9, "embedding": vec, "evidence": {}, "snapshot_id": None}
            for i, (fp, vec) in enumerate([("nearest", _unit(1, 0.1)), ("proven", _unit(1, 0.4)),
                                           ("farthest", _unit(0, 1))])]
    with StoreDatabase(dsn=store_dsn).connect() as s:
        store.write_optimization_log(s, rows)
        before = store.similar_optimizations(s, _unit(1), limit=3)
        proven = next(r["id"] for r in before if r["query_text"] == "SELECT 1")
        store.record_realized_gain(s, proven, 87.5, datetime.now(timezone.utc))
        after = store.similar_optimizations(s, _unit(1), limit=3)
    assert [r["query_text"] for r in before] == ["SELECT 0", "SELECT 1", "SELECT 2"]
    assert [r["query_text"] for r in after] == ["SELECT 1", "SELECT 0", "SELECT 2"]
    assert after[0]["realized_gain"] == 87.5 and after[1]["realized_gain"] is None
    assert after[0]["similarity"] < after[1]["similarity"]


def test_similar_search_is_planned_for_each_probe_never_prepared(store_dsn):
    """psycopg prepares a statement on its 5th run; the generic plan of the search cannot order by the
    probe's distance through the HNSW index and sorts the whole cache (20x slower at 10k rows). A warm
    serve connection must plan each probe: nothing of the search is ever prepared on it."""
    rng = np.random.default_rng(7)
    with StoreDatabase(dsn=store_dsn).connect() as s:
        for _ in range(8):
            store.similar_optimizations(s, _unit(*rng.standard_normal(8)), limit=3)
        prepared = [r[0] for r in s.execute("SELECT statement FROM pg_prepared_statements")]
    assert not [q for q in prepared if "query_embedding" in q], prepared


# -- run_failure_alert -------------------------------------------------------------------------------

@dg.op
def explode():
    raise RuntimeError("the store is on fire")


@dg.job
def failing_job():
    explode()


def test_run_failure_sensor_posts_the_alert_to_the_webhook(webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv(watch.ALERT_WEBHOOK_ENV, url)
    with dg.instance_for_test() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False,
                                                tags={"dagster/partition": "app|2025-06-01"})
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event()).for_run_failure()
        run_failure_alert(context)
    assert len(received) == 1
    alert = received[0]
    assert alert["run_id"] == result.run_id and alert["job"] == "failing_job"
    assert alert["partition"] == "app|2025-06-01" and alert["step"] == "explode"
    assert "the store is on fire" in alert["error"]


def test_an_unreachable_webhook_is_reported_not_raised():
    problem = watch.post_json("http://127.0.0.1:9/", {"event": "test"}, timeout=1)
    assert problem and problem.startswith("webhook")
