"""The code location loads; the asset graph, checks, job and weekly schedule are what users expect;
dagster.yaml and workspace.yaml point at real modules and variables."""

from __future__ import annotations

import importlib

import dagster as dg
import yaml

from dbarch_pipeline.definitions import defs
from dbarch_pipeline.settings import PROJECT_ROOT

AUDIT = ["slow_query_snapshot", "query_embeddings", "index_recommendations", "benchmarked_gains",
         "optimization_log"]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_lineage_is_the_audit_chain():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(AUDIT) <= keys
    for upstream, downstream in zip(AUDIT, AUDIT[1:]):
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, f"{downstream} should depend on {upstream}"
    for key in AUDIT:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "weekly_audit"
        assert node.description


def test_weekly_schedule_sunday_two_am():
    schedule = defs.get_schedule_def("weekly_audit_schedule")
    assert schedule.cron_schedule == "0 2 * * 0"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "weekly_audit_job"


def test_schedule_timezone_is_configurable(monkeypatch):
    from dbarch_pipeline.defs.schedules import weekly_audit_schedule

    assert weekly_audit_schedule("Asia/Ho_Chi_Minh").execution_timezone == "Asia/Ho_Chi_Minh"


def test_integrity_checks_block():
    graph = defs.resolve_asset_graph()
    specs = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert specs["target_schema_unchanged"].blocking
    assert specs["recommendations_logged_with_embeddings"].blocking
    assert not specs["low_confidence_recommendations"].blocking


def test_workspace_and_instance_config_point_at_real_things():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert importlib.import_module(module).defs is defs
    instance = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    custom = instance["storage"]["custom"]
    assert importlib.import_module(custom["module"]).DbarchStorage.__name__ == custom["class"]


def test_demo_run_is_recorded_in_the_project_instance(demo_target, store_dsn, server, tmp_path, monkeypatch):
    """The CLI's runs land in the postgres-backed Dagster instance that `dagster dev` reads."""
    from dbarch_pipeline import run

    from .conftest import fresh_database

    url = fresh_database("dbarch_test_dagster", pg_stat_statements=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_URL", url.replace("postgresql://", "postgresql+psycopg2://"))
    instance = run.persistent_instance()
    result = run.materialize_audit(run.audit_resources(target_dsn=demo_target, store_dsn=store_dsn,
                                                       settings={"runs": 1, "param_sets": 1}),
                                   instance=instance)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert instance.get_run_by_id(result.run_id).is_success
    assert instance.get_latest_materialization_event(dg.AssetKey("optimization_log")) is not None


def test_dagster_validate_works_in_the_project_root_with_no_environment(tmp_path):
    """`dagster definitions validate -w workspace.yaml`, as a Dagster user types it: no DAGSTER_HOME,
    no DAGSTER_PG_URL, no embedded server running (a fresh DBARCH_HOME): local SQLite, and it says so."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "DBARCH_"))}
    env.update(DBARCH_HOME=str(tmp_path), DBARCH_PG_PORT="1", HF_HUB_OFFLINE="1")
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Dagster storage: SQLite in" in output and "All code locations passed validation" in output
