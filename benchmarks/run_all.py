"""Run the three benchmarks in sequence (log writes, embeddings, audit stages) and print a summary.

Each benchmark prints its own figures; this script collects their results and prints the headline
numbers at the end. Asserts nothing about timing. `make bench` runs it.

Run: .venv/bin/python benchmarks/run_all.py [--rows 300000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_audit_stages  # noqa: E402
import bench_embeddings  # noqa: E402
import bench_log_writes  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="behavior_log rows of the audit demo")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict = {}
    results["log_writes"] = bench_log_writes.main([])
    print()
    results["embeddings"] = bench_embeddings.main([])
    print()
    results["audit"] = bench_audit_stages.main(["--rows", str(args.rows), "--quiet"])

    lw = results["log_writes"]
    r = lw["log"]
    e, a = results["embeddings"], results["audit"]
    print("\n" + "=" * 78)
    print("SUMMARY")
    print("OptimizationLog, 1,000 rows (median ms)      COPY  row/autocommit  row/one tx  ratios")
    print(f"{'  as shipped':<42} {r['copy']:7.1f} {r['row_by_row_autocommit']:15.1f} {r['row_by_row_one_tx']:11.1f}"
          f"  {r['ratio_autocommit']:.1f}x / {r['ratio_one_tx']:.1f}x")
    print(f"  re-run upsert {lw['upsert_rerun_ms']:.1f} ms; embedding cache (HNSW, once per new statement) "
          f"{lw['embedding_cache_ms']:.1f} ms")
    print(f"  seeds' claim (COPY < {bench_log_writes.TARGET_COPY_MS:.0f} ms and >= "
          f"{bench_log_writes.TARGET_RATIO:.0f}x row by row): "
          f"{'met' if r['copy'] < 50 and r['ratio_autocommit'] >= 13 else 'not met'}")
    for threads in sorted(k for k in e if isinstance(k, int)):
        print(f"Embeddings ({e.get('runtime')}, {threads} thread(s)): model load {e['model_load_ms']:.0f} ms; "
              f"batch 1 {e[threads]['batch_1_qps']:.1f} q/s, batch 64 {e[threads]['batch_64_qps']:.1f} q/s (medians)")
    slow = a["slow_queries"]
    print(f"Audit ({args.rows:,} rows): {slow} slow queries, materialize_audit {a['audit_wall_s']:.1f} s")
    for step, seconds in a["stages_s"].items():
        per = f"{1000 * seconds / slow:.0f} ms/slow query" if slow else "-"
        print(f"  {step:<64} {seconds:6.2f} s  {per}")
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
