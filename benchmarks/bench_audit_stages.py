"""Benchmark: wall time of each stage (Dagster asset) of one full audit of the demo.

Loads the demo learning platform (`demo.load`, Scale(behavior_rows=N), N=300,000 by default) into a
fresh database `dbarch_bench_target` on the embedded PostgreSQL (with pg_stat_statements), runs the
demo workload, then materializes the real audit asset graph with
`materialize_audit(audit_resources(target_dsn=..., store_dsn=...))` against a fresh, empty store
`dbarch_bench_store2` (default audit settings; the target doubles as the sandbox, every experiment
rolled back). Step durations come from the Dagster instance's step stats for the run. Prints the
load and workload times, the wall time per stage, the number of slow queries and the wall time per
slow query per stage. Asserts nothing. Both databases are dropped at the end.

Run alone: .venv/bin/python benchmarks/bench_audit_stages.py [--rows 300000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import dagster as dg  # noqa: E402
import psycopg  # noqa: E402

from dbarch_pipeline.embedded import drop_database, recreate_database as fresh_database  # noqa: E402
from dbarch_pipeline import demo, embedded  # noqa: E402
from dbarch_pipeline.defs.assets import AUDIT_ASSETS  # noqa: E402
from dbarch_pipeline.memory import embeddings  # noqa: E402
from dbarch_pipeline.run import audit_resources, materialize_audit  # noqa: E402

TARGET_DB = "dbarch_bench_target"
STORE_DB = "dbarch_bench_store2"






def _metadata(result: dg.ExecuteInProcessResult, asset_name: str) -> dict:
    """The materialization metadata of one asset, as plain values."""
    events = result.asset_materializations_for_node(asset_name)
    if not events:
        return {}
    return {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="behavior_log rows of the demo")
    parser.add_argument("--quiet", action="store_true", help="hide the demo's progress lines")
    args = parser.parse_args(argv)
    say = (lambda _m: None) if args.quiet else print

    print(f"== Audit stages: demo with {args.rows:,} behavior_log rows ==")
    embedded.start()
    summary: dict = {}
    try:
        target_url = fresh_database(TARGET_DB, pg_stat_statements=True)
        store_url = fresh_database(STORE_DB, pg_stat_statements=False)
        with psycopg.connect(target_url, autocommit=True) as conn:
            t = time.perf_counter()
            counts = demo.load(conn, demo.Scale(behavior_rows=args.rows), progress=say)
            summary["load_s"] = time.perf_counter() - t
            t = time.perf_counter()
            spent = demo.run_workload(conn, progress=say)
            summary["workload_s"] = time.perf_counter() - t
        print(f"demo load: {summary['load_s']:.1f} s ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
        print(f"workload: {summary['workload_s']:.1f} s ({sum(q.calls for q in demo.WORKLOAD)} statements; "
              f"slowest: {max(spent, key=spent.get)} {max(spent.values()):.1f} s)")

        model_cached = bool(embeddings._models)
        instance = dg.DagsterInstance.ephemeral()
        t = time.perf_counter()
        result = materialize_audit(audit_resources(target_dsn=target_url, store_dsn=store_url),
                                   instance=instance)
        summary["audit_wall_s"] = time.perf_counter() - t
        run_id = result.dagster_run.run_id
        stats = sorted(instance.get_run_step_stats(run_id), key=lambda s: s.start_time or 0)

        snapshot = _metadata(result, "slow_query_snapshot")
        slow = int(snapshot.get("slow_queries", 0))
        summary["slow_queries"] = slow
        asset_names = {a.key.to_user_string() for a in AUDIT_ASSETS}
        print(f"\naudit run {run_id}: success={result.success}, "
              f"{summary['audit_wall_s']:.1f} s wall time for materialize_audit (incl. Dagster overhead)")
        print(f"slow queries in the snapshot: {slow}")
        stage_times: dict[str, float] = {}
        print(f"\n  {'stage (step)':<64} {'wall s':>8} {'ms / slow query':>16}  status")
        for s in stats:
            seconds = (s.end_time or 0) - (s.start_time or 0)
            stage_times[s.step_key] = seconds
            per_query = f"{1000 * seconds / slow:.0f}" if slow else "-"
            kind = "" if s.step_key in asset_names else " (asset check)"
            status = s.status.value if s.status else "?"
            print(f"  {s.step_key + kind:<64} {seconds:8.2f} {per_query:>16}  {status}")
        total_steps = sum(stage_times.values())
        print(f"  {'sum of steps':<64} {total_steps:8.2f} "
              f"{(f'{1000 * total_steps / slow:.0f}' if slow else '-'):>16}")
        details = {name: _metadata(result, name) for name in
                   ("query_embeddings", "index_recommendations", "benchmarked_gains", "optimization_log")}
        print(f"\n  embedded {details['query_embeddings'].get('embedded')} statements; "
              f"{details['index_recommendations'].get('candidates')} candidate indexes; "
              f"{details['benchmarked_gains'].get('candidates_measured')} measured, "
              f"{details['benchmarked_gains'].get('candidates_failed')} failed; "
              f"{details['optimization_log'].get('recommendations')} recommendations logged")
        print("  query_embeddings " + ("reused the model already loaded in this process" if model_cached else
              "includes loading the embedding model (first use in this process)"))
        summary["stages_s"] = stage_times
    finally:
        drop_database(TARGET_DB)
        drop_database(STORE_DB)
    return summary


if __name__ == "__main__":
    main()
