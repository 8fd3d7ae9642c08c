"""The pg_stat_activity sampler (bench/activity.py): a statement the application runs with constants
inside an indexed expression (`substr(code, 1, 8) = %s`, kept by pg_stat_statements as
`substr(code, $2, $3) = $1`) is seen by the activity_sampler sensor while it runs, matched to its
pg_stat_statements entry by query_id, and, with the server log off, the audit gives the constants
back to the expression and proposes its index, the evidence naming the sampled text as the source.
Also: a role without pg_read_all_stats gets a clear note (CLI too); dbarch's own sessions and
statements are never sampled; the retention, the switch and `targets remove --purge`."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from dbarch_pipeline import report, targets
from dbarch_pipeline.bench import activity
from dbarch_pipeline.bench.observed import ObservedSettings
from dbarch_pipeline.bench.params import SampledText, recover_constants, typed_statement
from dbarch_pipeline.db import APPLICATION_NAME, DBARCH_TAG, database_name
from dbarch_pipeline.defs.partitions import TARGETS_NAME
from dbarch_pipeline.defs.sensors import activity_sampler
from dbarch_pipeline.memory.store import ensure_schema
from dbarch_pipeline.prs import body
from dbarch_pipeline.resources.audit_settings import AuditSettingsResource
from dbarch_pipeline.resources.postgres import StoreDatabase, TargetDatabase
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database

ROWS = 150_000
APP = "SELECT id, cents FROM codes WHERE substr(code, 1, 8) = %s"


@pytest.fixture(scope="module")
def codes(server):
    url = fresh_database("dbarch_test_activity")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE codes (id int PRIMARY KEY, code text NOT NULL, cents int NOT NULL);
            INSERT INTO codes SELECT g, 'K' || lpad(((g::bigint * 7919) % 90000)::text, 6, '0') || md5(g::text),
                                     (g::bigint * 104729) % 1000000
            FROM generate_series(1, {ROWS}) g""")
        conn.execute("VACUUM ANALYZE codes")
        # the server logs nothing of this database's statements: the constants can only come from samples
        for name in ("log_min_duration_statement", "log_min_duration_sample"):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = -1").format(sql.Identifier(database_name(url)),
                                                                        sql.Identifier(name)))
        VALUES.extend(r[0] for r in conn.execute("SELECT substr(code, 1, 8) FROM codes WHERE id % 1000 = 7"))
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")
        conn.execute("SELECT pg_stat_reset()")
    return url


VALUES: list[str] = []


def _app(url: str, stop: threading.Event, calls: list, rng: random.Random, *, application_name: str = "app",
         statement: str = APP) -> None:
    with psycopg.connect(url, autocommit=True, application_name=application_name) as conn:
        while not stop.is_set() and len(calls) < 200:
            conn.execute(statement, (rng.choice(VALUES),)).fetchall()
            calls.append(1)


def _running(url: str, **kw):
    stop, calls = threading.Event(), []
    thread = threading.Thread(target=_app, args=(url, stop, calls, random.Random(kw.pop("seed", 1))), kwargs=kw,
                              daemon=True)
    thread.start()
    return stop, calls, thread


def test_a_sampled_text_gives_the_audit_the_constants_and_the_expression_its_index(codes, store_dsn):
    seed = random.randrange(10**6)
    print(f"seed={seed}")
    name = database_name(codes)
    resources = {"target": TargetDatabase(dsn=codes), "store": StoreDatabase(dsn=store_dsn),
                 "audit_settings": AuditSettingsResource(**FAST_SETTINGS, activity_sample_seconds=0.5,
                                                         activity_sample_interval_s=0.01)}
    stop, calls, thread = _running(codes, seed=seed)
    try:
        with dg.instance_for_test() as instance:
            # a registered target that is not configured anywhere is a named problem, not a failed tick
            instance.add_dynamic_partitions(TARGETS_NAME, [name, "unknown_target"])
            texts: dict = {}
            for _ in range(20):       # the sensor's ticks, until the statement was running at one of them
                tick = activity_sampler(dg.build_sensor_context(instance=instance, resources=resources))
                assert f"{name}: " in tick.skip_message and "unknown_target: unknown target" in tick.skip_message, \
                    tick.skip_message
                with psycopg.connect(store_dsn) as s:
                    texts = {qid: t for qid, t in s.execute("SELECT queryid, query_text FROM dbarch.activity_sample "
                                                            "WHERE target = %s", (name,))}
                if texts and len(calls) >= 6:
                    break
    finally:
        stop.set()
        thread.join()
    with psycopg.connect(codes, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        pgss = conn.execute("SELECT queryid, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                            "WHERE datname = current_database()) AND query LIKE 'SELECT id, cents FROM codes%'").fetchall()
    [(queryid, normalized)] = pgss
    assert "substr(code, $2, $3) = $1" in normalized
    # the text as the client sent it, matched by query_id to its pg_stat_statements entry
    assert texts == {queryid: APP.replace("%s", "$1")}, (texts, pgss, len(calls))

    assert materialize_audit(audit_resources(target_dsn=codes, store_dsn=store_dsn, settings=FAST_SETTINGS)).success
    with psycopg.connect(store_dsn) as s:
        data = report.audit_result(s, target=name, settings=AuditSettingsResource(**FAST_SETTINGS).settings())
    [rec] = [r for r in data["recommendations"] if r["queryid"] == queryid and r["ddl"] in
             {i["ddl"] for i in data["indexes"]}] or [None]
    assert rec is not None, (data["indexes"], data["unmeasured"], data["declined"])
    assert "substr(code, 1, 8)" in rec["ddl"]
    constants = rec["evidence"]["parameter_values"]["constants"]
    assert constants == {"source": activity.SOURCE, "params": {"$2": "(observed)", "$3": "(observed)"}}
    assert any("activity samples: texts of 1 of" in n for n in data["notes"]), data["notes"]
    # the report and the pull request say where the constants came from, not what they are
    assert "constants $2, $3 given back from the activity sample" in report.format_report(data)
    assert "($2, $3) were given back from the activity sample" in "\n".join(body._measurements(rec, 2000))


def test_a_role_without_pg_read_all_stats_is_told_and_dbarch_is_never_sampled(codes, store_dsn, capsys):
    from dbarch_pipeline.cli import main

    role = f"dbarch_test_nostats_{database_name(codes).rsplit('_', 1)[-1]}"
    with psycopg.connect(codes, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    info = psycopg.conninfo.conninfo_to_dict(codes)
    limited = psycopg.conninfo.make_conninfo(**{**info, "user": role})
    stop, calls, thread = _running(codes)
    own_stop, own_calls, own = _running(codes, application_name=APPLICATION_NAME)
    tagged_stop, tagged_calls, tagged = _running(codes, application_name="app2",
                                                 statement=APP.replace("SELECT", f"SELECT {DBARCH_TAG}", 1))
    try:
        with psycopg.connect(limited, autocommit=True) as conn:
            seen = activity.sample(conn, seconds=0.6, interval=0.02)
        assert not seen.texts and seen.hidden >= 2
        [note] = seen.notes()
        assert "pg_read_all_stats" in note and f"GRANT pg_monitor TO {role}" in note
        assert main(["sample-activity", "--target-dsn", limited, "--store-dsn", store_dsn, "--seconds", "0.5",
                     "--interval", "0.05"]) == 0
        out = capsys.readouterr().out
        assert "pg_read_all_stats" in out and "Traceback" not in out

        with psycopg.connect(codes, autocommit=True) as conn:     # a superuser reads every text
            seen = activity.sample(conn, seconds=1.0, interval=0.01)
    finally:
        for s in (stop, own_stop, tagged_stop):
            s.set()
        for t in (thread, own, tagged):
            t.join()
    texts = {text for _qid, text in seen.texts}
    assert texts <= {APP.replace("%s", "$1")} and calls and own_calls and tagged_calls
    assert not any(DBARCH_TAG in t for t in texts) and seen.samples >= 10
    with psycopg.connect(codes, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_retention_switch_and_purge(server, store_dsn, monkeypatch):
    settings = ObservedSettings(keep_per_statement=2, retention_days=3)
    now = datetime.now(timezone.utc)
    with psycopg.connect(store_dsn, autocommit=True) as s:
        ensure_schema(s)
        seen = activity.Sampled()
        for n in range(3):
            seen.texts[(7, f"SELECT {n} FROM t WHERE x = $1")].add((100 + n, now))
        seen.texts[(8, "SELECT 1")].add((1, now))
        assert activity.save(s, "app", seen, settings) == 4
        kept = activity.load(s, "app", [7, 8], settings)
        assert len(kept[7]) == 2 and kept[8] == ["SELECT 1"]          # the newest 2 per statement
        s.execute("UPDATE dbarch.activity_sample SET last_seen = now() - interval '4 days' WHERE queryid = 8")
        activity.save(s, "app", activity.Sampled(), settings)
        assert 8 not in activity.load(s, "app", [7, 8], settings)       # older than the retention
        assert activity.load(s, "app", [7], ObservedSettings(enabled=False)) == {}

        monkeypatch.setenv("DBARCH_OBSERVED_PARAMS", "off")
        off = ObservedSettings.from_env()
        assert activity.sample_activity(s, s, target="app", settings=off)["activity_samples"] == "off"

        assert targets.remove(s, "app", purge=True)["activity_samples"] == 2
        assert s.execute("SELECT count(*) FROM dbarch.activity_sample").fetchone()[0] == 0


def test_constants_are_lined_up_with_pg_stat_statements():
    norm = "SELECT id FROM t, pg_sleep($2) WHERE date_trunc($3, at) = $1 AND n > $4 LIMIT $5"
    assert activity.constants(norm, ["SELECT id FROM t, pg_sleep(0.5) WHERE date_trunc('day', at) = $1 "
                                     "AND n > -3 LIMIT 10;", "SELECT 1"]) == [
        SampledText({2: "0.5", 3: "day", 4: "-3", 5: "10"}, bound=True)]
    # a statement sent with the simple protocol: every value is a literal
    assert activity.constants("SELECT id FROM t WHERE substr(code, $1, $2) = $3",
                              ["SELECT id FROM t WHERE substr(code, 1, 8) = 'K0001'"]) == [
        SampledText({1: "1", 2: "8", 3: "K0001"}, bound=False)]
    # a list pg_stat_statements squashed is no single constant
    assert activity.constants("SELECT id FROM t WHERE k IN ($2 /*, ... */) AND n = $1",
                              ["SELECT id FROM t WHERE k IN (1, 2, 3) AND n = $1"]) == [SampledText({}, bound=True)]


def test_constants_written_in_the_application_sql_go_back_and_values_it_passes_do_not(codes):
    """A sampled text with bound parameters: its literals are the code's (a LIMIT, a status a
    partial index can hold, a factor); a text without (the simple protocol) gives back only the
    constants of indexed expressions, since its other literals may be the call's values."""
    query = "SELECT id FROM codes WHERE cents BETWEEN $1 * $3 AND $2 * $3 AND code <> $4 ORDER BY id LIMIT $5"
    bound = "SELECT id FROM codes WHERE cents BETWEEN $1 * 100 AND $2 * 100 AND code <> 'x' ORDER BY id LIMIT 10"
    simple = "SELECT id FROM codes WHERE cents BETWEEN 7 * 100 AND 9 * 100 AND code <> 'x' ORDER BY id LIMIT 10"
    with psycopg.connect(codes, autocommit=True) as conn:
        typed = typed_statement(conn, query)      # as the audit types it first ($3 * ... is ambiguous)
        done = recover_constants(conn, typed, None, activity.constants(query, [bound]))
        assert done.text == ("SELECT id FROM codes WHERE cents BETWEEN $1 * '100'::integer::integer AND "
                             "$2 * '100'::integer::integer AND code <> 'x'::text ORDER BY id LIMIT '10'::bigint")
        assert done.sources == (activity.SOURCE,) and set(done.constants) == {3, 4, 5}
        conn.execute("EXPLAIN (GENERIC_PLAN) " + done.text)
        assert recover_constants(conn, typed, None, activity.constants(query, [bound, simple])).text == typed
        # texts that disagree give nothing back; a logged set that disagrees neither
        other = bound.replace("LIMIT 10", "LIMIT 20")
        assert "LIMIT $" in recover_constants(conn, typed, None, activity.constants(query, [bound, other])).text
        assert "LIMIT $" in recover_constants(conn, typed, [("1", "2", "100", "x", "50")],
                                              activity.constants(query, [bound])).text
    assert activity.Sampled(truncated=2, query_size=1024).notes()[0].startswith("2 text(s) longer than")
