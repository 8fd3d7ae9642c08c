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

`--profile` also times the benchmark stage's parts (value calibration, the allow-list check,
baselines, index builds, interleaved timing, bootstrap, re-planning, write cost, configurations) by
wrapping those functions with a clock, and prints where the seconds went (calls, seconds; parts nest,
so they do not add up). `--keep-target` keeps the loaded database, and a later run with the same
seed and scale reuses it (no reload). `--dump FILE` writes each count's benchmark rows and audit
result as JSON (to see which statement spent the runs).

Run alone: .venv/bin/python benchmarks/bench_scaling.py [--scale 4] [--counts 10,50,100] [--seed 7]
           [--setting name=value ...] [--profile] [--keep-target] [--dump rows_{n}.json]
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
from psycopg import sql  # noqa: E402

from dbarch_pipeline import embedded, report  # noqa: E402
from dbarch_pipeline.embedded import drop_database, recreate_database  # noqa: E402
from dbarch_pipeline.memory import embeddings  # noqa: E402
from dbarch_pipeline.memory import store as store_rows  # noqa: E402
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


class StageClock:
    """Calls and seconds of named functions, measured by wrapping them where they are looked up."""

    # (module, attribute, label): the module the caller looks the function up in
    PARTS = (
        ("dbarch_pipeline.audit", "prepare", "prepare (values + baseline), per statement"),
        ("dbarch_pipeline.bench.runner", "check_statement", "  allow-list check"),
        ("dbarch_pipeline.bench.runner", "sample_parameter_sets", "  parameter values (calibration)"),
        ("dbarch_pipeline.bench.runner", "measure", "  baseline / plain timing (measure)"),
        ("dbarch_pipeline.audit", "whatif", "HypoPG screening"),
        ("dbarch_pipeline.audit", "evaluate_candidate", "evaluate_candidate, per distinct index"),
        ("dbarch_pipeline.bench.runner", "measure_pair", "  interleaved timing (measure_pair)"),
        ("dbarch_pipeline.bench.evaluate", "separated", "    bootstrap stop test (separated)"),
        ("dbarch_pipeline.bench.runner", "plan_of", "  re-plan other statements (plan_of)"),
        ("dbarch_pipeline.bench.runner", "_cross_timings", "  side effects timed on other statements"),
        ("dbarch_pipeline.audit", "time_side_effects", "side effects of picked indexes (rebuilt, timed)"),
        ("dbarch_pipeline.bench.runner", "write_cost_per_row", "  write cost probe"),
        ("dbarch_pipeline.bench.evaluate", "confidence_parts", "  bootstrap confidence"),
        ("dbarch_pipeline.bench.runner", "plan_check", "  plans checked for the index (plan_check)"),
        ("dbarch_pipeline.audit", "evaluate_configuration_for", "evaluate_configuration_for, per set"),
        ("dbarch_pipeline.bench.measure", "analyze_once", "EXPLAIN ANALYZE (every execution)"),
        ("dbarch_pipeline.bench.measure", "generic_cost", "EXPLAIN GENERIC_PLAN"),
    )

    def __init__(self) -> None:
        import importlib

        self.totals: dict[str, list[float]] = {}
        self.saved = []
        for module, attr, label in self.PARTS:
            mod = importlib.import_module(module)
            if not hasattr(mod, attr):
                continue
            original = getattr(mod, attr)
            self.saved.append((mod, attr, original))
            setattr(mod, attr, self._wrap(original, label))

    def _wrap(self, fn, label: str):
        totals = self.totals.setdefault(label, [0, 0.0])

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[0] += 1
                totals[1] += time.perf_counter() - started
        return timed

    def reset(self) -> None:
        for v in self.totals.values():
            v[0], v[1] = 0, 0.0

    def report(self) -> str:
        lines = ["| part | calls | seconds |", "|---|---:|---:|"]
        for _m, _a, label in self.PARTS:
            if label in self.totals:
                calls, secs = self.totals[label]
                lines.append(f"| {label.strip()} | {calls} | {secs:.1f} |")
        return "\n".join(lines)


def _target_ready(seed: int, scale: float) -> bool:
    """Whether a kept target database holds this seed and scale (its comment says so)."""
    with psycopg.connect(embedded.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (TARGET_DB,)).fetchone()
    return bool(row and row[0] == f"seed {seed} scale {scale}")


def run_count(url: str, wl: generated.GeneratedWorkload, n: int, samples: dict, seed: int,
              extra: dict, dump: str | None = None) -> dict:
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
            if dump:
                snap = store_rows.latest_snapshot(s, resources["target"].target_name())
                Path(dump.replace("{n}", str(n))).write_text(json.dumps(
                    {"benchmarks": store_rows.benchmarks(s, snap["snapshot_id"]), "audit": audit},
                    indent=1, default=str))
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
    parser.add_argument("--profile", action="store_true", help="time the benchmark stage's parts")
    parser.add_argument("--dump", metavar="FILE",
                        help="write each count's benchmark rows and audit result to FILE ({n}: the count)")
    parser.add_argument("--keep-target", action="store_true",
                        help="keep the loaded database (a run with the same seed and scale reuses it)")
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
    clock = StageClock() if args.profile else None
    try:
        if args.keep_target and _target_ready(seed, args.scale):
            url = embedded.url(TARGET_DB)
            print("reusing the kept database")
        else:
            url = recreate_database(TARGET_DB, pg_stat_statements=True)
            with psycopg.connect(url, autocommit=True) as conn:
                t = time.perf_counter()
                generated.load(conn, wl.schema)
                conn.execute("VACUUM ANALYZE")
                conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(TARGET_DB), sql.Literal(f"seed {seed} scale {args.scale}")))
                print(f"loaded in {time.perf_counter() - t:.0f}s")
        with psycopg.connect(url, autocommit=True) as conn:
            bind_ints_as_bigint(conn)
            samples = generated.samples(conn, wl.schema, seed)
        for n in counts:
            print(f"load average before {n}: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            if clock:
                clock.reset()
            row = run_count(url, wl, n, samples, seed, extra, args.dump)
            rows.append(row)
            print(f"{n} statements: audit {row['audit_s']:.0f}s ({row['slow_queries']} slow in the snapshot), "
                  f"steps {row['steps']}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                  flush=True)
            if clock:
                print(clock.report(), flush=True)
    finally:
        if not args.keep_target:
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
