"""Benchmark: audit wall time against the number of slow statements, by stage, on the generated suite.

Loads one generated schema (benchmarks/quality/generated.py, `--seed`, `--scale`: scale 4 gives an
event table of 0.6-2.4M rows) into a fresh database on the embedded PostgreSQL, then for each count
N in `--counts` (default 10, 50, 100): resets the statistics, runs the application's traffic for the
first N distinct read statements (each its own pg_stat_statements entry) and the writes, and runs
the real audit (`materialize_audit`, Gemini off: no LLM) against a fresh store with `top_n = N`, so
every slow statement is considered. Step durations come from the Dagster instance's step stats:
snapshot (slow_query_snapshot), embeddings (query_embeddings), recommendations
(index_recommendations), benchmarks (benchmarked_gains), log (optimization_log), and any other step
the audit has. Goal (issue 10): 100 statements on tables of millions of rows in under 5 minutes on 2
cores, excluding the LLM. Asserts nothing; prints a table to paste, and the load average.

Run alone: .venv/bin/python benchmarks/bench_scaling.py [--scale 4] [--counts 10,50,100] [--seed 7]
           [--setting name=value ...]   (extra audit settings, e.g. a time budget where the audit has one)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import psycopg  # noqa: E402

from dbarch_pipeline import embedded, report  # noqa: E402
from dbarch_pipeline.embedded import drop_database, recreate_database  # noqa: E402
from dbarch_pipeline.memory import embeddings  # noqa: E402
from dbarch_pipeline.run import audit_resources, materialize_audit  # noqa: E402

from benchmarks.quality import generated, scoring  # noqa: E402
from benchmarks.quality.run_quality import reset_statistics, run_workload  # noqa: E402
from benchmarks.quality.workloads import bind_ints_as_bigint  # noqa: E402

TARGET_DB = "dbarch_bench_scaling"
STAGES = {"slow_query_snapshot": "snapshot", "query_embeddings": "embeddings",
          "index_recommendations": "recommendations", "benchmarked_gains": "benchmarks",
          "optimization_log": "log"}


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def run_count(url: str, wl: generated.GeneratedWorkload, n: int, samples: dict, seed: int,
              extra: dict) -> dict:
    reads = [s for s in wl.statements if s.is_read][:n]
    part = generated.GeneratedWorkload(wl.schema, reads + [s for s in wl.statements if not s.is_read])
    store = f"{TARGET_DB}_store_{n}"
    store_url = recreate_database(store, pg_stat_statements=False)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            bind_ints_as_bigint(conn)
            reset_statistics(conn)
            workload_s = run_workload(conn, part, samples, seed + 2)
        settings = {"top_n": max(20, n + 10)} | extra
        resources = audit_resources(target_dsn=url, store_dsn=store_url, settings=settings)
        instance = dg.DagsterInstance.ephemeral()
        started = time.perf_counter()
        result = materialize_audit(resources, instance=instance)
        wall = time.perf_counter() - started
        stats = instance.get_run_step_stats(result.dagster_run.run_id)
        steps = {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in stats}
        with resources["store"].connect() as s:
            audit = report.audit_result(s, target=resources["target"].target_name(),
                                        settings=resources["audit_settings"].settings())
        return {"statements": n, "slow_queries": audit["slow_queries"], "workload_s": round(workload_s, 1),
                "audit_s": round(wall, 1), "steps": {k: round(v, 1) for k, v in steps.items()},
                "recommendations": len(audit["recommendations"]), "indexes": len(audit["indexes"]),
                "unmeasured": len(scoring.unmeasured(audit))}
    finally:
        drop_database(store)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=4.0, help="row-count multiplier of the generated schema")
    parser.add_argument("--counts", default="10,50,100", help="numbers of slow statements to audit")
    parser.add_argument("--seed", type=int, default=None, help="schema and statement seed (default: random)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra audit setting (AuditSettingsResource field)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    seed = args.seed if args.seed is not None else random.SystemRandom().randint(1, 99_999)
    extra = {k: _value(v) for k, v in (s.split("=", 1) for s in args.setting)}
    wl = generated.variants(seed, max(counts), args.scale)
    embedded.start()
    print(f"seed {seed}, scale {args.scale}: {', '.join(f'{k} {v:,}' for k, v in wl.schema.rows.items())}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t = time.perf_counter()
    embeddings.Embedder().embed(["warm-up"])    # the model loads once per process, not in the first count
    print(f"embedding model loaded in {time.perf_counter() - t:.1f}s (outside the audits' figures)")
    rows = []
    try:
        url = recreate_database(TARGET_DB, pg_stat_statements=True)
        with psycopg.connect(url, autocommit=True) as conn:
            t = time.perf_counter()
            generated.load(conn, wl.schema)
            conn.execute("VACUUM ANALYZE")
            bind_ints_as_bigint(conn)
            samples = generated.samples(conn, wl.schema, seed)
            print(f"loaded in {time.perf_counter() - t:.0f}s")
        for n in counts:
            row = run_count(url, wl, n, samples, seed, extra)
            rows.append(row)
            print(f"{n} statements: audit {row['audit_s']:.0f}s ({row['slow_queries']} slow in the snapshot), "
                  f"steps {row['steps']}", flush=True)
    finally:
        drop_database(TARGET_DB)
    names = list(STAGES) + sorted({k for r in rows for k in r["steps"]} - set(STAGES))
    header = ("| statements | slow in snapshot | " + " | ".join(STAGES.get(k, k) for k in names)
              + " | audit wall s | recommendations | unmeasured |")
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(f"| {r['statements']} | {r['slow_queries']} | " + " | ".join(f"{r['steps'].get(k, 0):.1f}" for k in names)
              + f" | {r['audit_s']:.1f} | {r['recommendations']} | {r['unmeasured']} |")
    print(f"\nseed {seed}, scale {args.scale}; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": seed, "scale": args.scale, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
