"""Targets with an identity and a lifecycle, through the CLI and Dagster's own test tools: a one-off
`dbarch audit --target-dsn` leaves no partition a schedule would tick for and no password in the
instance; `dbarch targets add|list|remove` keep the store's registry and the partitions in step; the
weeks offered start at the target's first capture; a recreated database starts a new history; two
servers' databases of the same name get two names."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from dbarch_pipeline import cli, history, run, targets
from dbarch_pipeline.defs.partitions import TARGETS_NAME, WEEKS_NAME, audit_key, week_of, weeks_since
from dbarch_pipeline.defs.schedules import capture_schedule, weekly_audit_schedule
from dbarch_pipeline.resources.postgres import StoreDatabase

from .conftest import FAST_SETTINGS, fresh_database

PASSWORD = "s3cret-pw-never-stored"


@pytest.fixture()
def instance(monkeypatch):
    with dg.instance_for_test() as inst:
        monkeypatch.setattr(run, "persistent_instance", lambda: inst)
        yield inst


def _flags() -> list[str]:
    return ["--runs", str(FAST_SETTINGS["runs"]), "--param-sets", str(FAST_SETTINGS["param_sets"]),
            "--min-mean-ms", str(FAST_SETTINGS["min_mean_ms"]), "--min-calls", str(FAST_SETTINGS["min_calls"])]


def _ticks(instance, when: datetime) -> list:
    requests = []
    for schedule in (capture_schedule, weekly_audit_schedule()):
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        data = schedule.evaluate_tick(ctx)
        requests += list(data.run_requests or [])
    return requests


def _observe(s, target: str) -> None:
    s.execute("INSERT INTO dbarch.observed_parameters (target, fingerprint, logged_at, values_hash, params, source) "
              "VALUES (%s, 'fp', now(), 'h', ARRAY['someone@example.org'], 'server log')", (target,))


def _observed(s) -> dict[str, int]:
    return dict(s.execute("SELECT target, count(*) FROM dbarch.observed_parameters GROUP BY 1").fetchall())


def test_one_off_audit_leaves_nothing_scheduled_and_no_password(demo_target, store_dsn, instance, monkeypatch):
    for var in ("DBARCH_TARGET_DSN", "DBARCH_SANDBOX_DSN", "DBARCH_TARGETS"):
        monkeypatch.delenv(var, raising=False)   # restored after the test: the audit sets them
    # the default target is configured, so it is "scheduled"; name it so it differs from the one-off
    monkeypatch.setenv("DBARCH_TARGET_NAME", "some_other_default")
    with_password = demo_target.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    code = cli.main(["audit", "--target-dsn", with_password, "--store-dsn", store_dsn, "--no-pull-requests",
                     *_flags()])
    assert code == 0
    name = psycopg.conninfo.conninfo_to_dict(demo_target)["dbname"]
    runs = instance.get_runs()
    assert runs and all(r.is_success for r in runs)
    # the run's partition is gone: no schedule tick requests anything for it
    assert not instance.has_dynamic_partition(TARGETS_NAME, name)
    assert [r for r in _ticks(instance, datetime.now(timezone.utc)) if name in str(r.partition_key)] == []
    # the store remembers the audit (and who the target is), never the password
    with StoreDatabase(dsn=store_dsn).connect() as s:
        row = targets.get(s, name)
        assert row is not None and not row["scheduled"] and row["dsn"] is None
        dumped = s.execute("SELECT string_agg(t::text, ' ') FROM dbarch.target t").fetchone()[0]
        assert PASSWORD not in dumped
        assert s.execute("SELECT count(*) FROM dbarch.snapshot WHERE target = %s", (name,)).fetchone()[0] == 1
    stored = b"".join(p.read_bytes() for p in Path(instance.root_directory).rglob("*") if p.is_file())
    assert stored and PASSWORD.encode() not in stored


def test_targets_add_list_remove_keep_registry_and_partitions_in_step(demo_target, store_dsn, instance,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("APP_DSN_I11", demo_target)
    assert cli.main(["targets", "add", "app", "--dsn-env", "APP_DSN_I11", "--store-dsn", store_dsn]) == 0
    assert instance.has_dynamic_partition(TARGETS_NAME, "app")
    capsys.readouterr()
    # a DSN with a password is refused: it would be stored
    with_password = demo_target.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    assert cli.main(["targets", "add", "other", "--dsn", with_password, "--store-dsn", store_dsn]) == 2
    assert PASSWORD not in capsys.readouterr().err

    # the first capture, three weeks ago: the weeks offered start there
    first = datetime.now(timezone.utc) - timedelta(days=21)
    with psycopg.connect(demo_target, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
        history.capture(t, s, target="app", now=first)
    resources = run.audit_resources(store_dsn=store_dsn, target_name="app")
    assert run.capture_now(resources, instance=instance, target="app").success
    weeks = instance.get_dynamic_partitions(WEEKS_NAME)
    assert weeks == weeks_since(first) and weeks[0] == week_of(first) and len(weeks) in (4, 5)
    assert cli.main(["targets", "weeks", "app", "--keys", "--store-dsn", store_dsn]) == 0
    keys = capsys.readouterr().out.strip().split(",")
    assert keys == [str(audit_key("app", w)) for w in weeks]

    assert cli.main(["targets", "list", "--json", "--store-dsn", store_dsn]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed["app"]["scheduled"] and listed["app"]["partition"] and listed["app"]["dsn"] == "$APP_DSN_I11"
    assert "/" in listed["app"]["identity"]

    with StoreDatabase(dsn=store_dsn).connect() as s:
        _observe(s, "app")
    assert cli.main(["targets", "remove", "app", "--purge", "--store-dsn", store_dsn]) == 0
    assert "1 observed parameter values" in capsys.readouterr().out
    with StoreDatabase(dsn=store_dsn).connect() as s:
        assert "app" not in _observed(s)       # values the application bound: personal data, purged
    assert not instance.has_dynamic_partition(TARGETS_NAME, "app")
    assert _ticks(instance, datetime.now(timezone.utc)) == [] or all(
        "app" != str(r.partition_key).split("|")[0] for r in _ticks(instance, datetime.now(timezone.utc)))
    with StoreDatabase(dsn=store_dsn).connect() as s:
        assert "app" not in targets.known_names(s)
    assert cli.main(["optimizations", "--target", "app", "--store-dsn", store_dsn]) == 2
    assert "unknown target 'app'" in capsys.readouterr().err


def test_a_recreated_database_starts_a_new_history(store_dsn):
    url = fresh_database("dbarch_test_recreated")
    with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
        history.capture(t, s, target="shop", now=datetime.now(timezone.utc) - timedelta(hours=2))
        old_oid = targets.get(s, "shop")["database_oid"]
        _observe(s, "shop")
    url = fresh_database("dbarch_test_recreated")      # dropped and created again: a new OID
    with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
        summary = history.capture(t, s, target="shop")
        assert summary["retired_history"]["retired_as"] == f"shop~{old_oid}"
        assert summary["retired_history"]["captures"] == 1
        counts = dict(s.execute("SELECT target, count(*) FROM dbarch.pgss_capture GROUP BY 1").fetchall())
        assert counts == {"shop": 1, f"shop~{old_oid}": 1}
        # the values the old database's application bound go with its history
        assert summary["retired_history"]["observed_values"] == 1
        assert _observed(s) == {f"shop~{old_oid}": 1}
        assert targets.get(s, "shop")["database_oid"] != old_oid


def test_two_servers_with_a_database_of_the_same_name_never_mix(store_dsn):
    url = fresh_database("dbarch_test_twins")
    with psycopg.connect(url, autocommit=True) as t, StoreDatabase(dsn=store_dsn).connect() as s:
        here = targets.identify(t)
        history.capture(t, s, target=targets.name_for(s, here))
        # the same database name on another server (another system identifier)
        twin = targets.Identity("7000000000000000001", here.database_oid, here.database, "db2.example:5432")
        assert targets.name_for(s, here) == here.database
        assert targets.name_for(s, twin) == f"{here.database}@db2.example-5432"
        # the same server, the database recreated: the name carries on (its history restarts on capture)
        recreated = targets.Identity(here.system_identifier, here.database_oid + 1, here.database, here.server)
        assert targets.name_for(s, recreated) == here.database
