"""Benchmark: embedding rate of dbarch's Embedder (all-MiniLM-L6-v2, bundled, CPU, offline).

Measures the model load time on its own, then the rate in queries/s of
`dbarch_pipeline.memory.embeddings.Embedder.embed` over ~500 realistic normalized SQL statements
(pg_stat_statements style, `$n` placeholders: varied SELECT/UPDATE/INSERT/DELETE over a few tables)
with batch sizes 1 and 64, on dbarch's runtime (ONNX Runtime by default, or `--embed-runtime torch`),
for each intra-op thread count asked (`--threads 1,2`: the database shares
the same cores, so fewer threads can be faster on a busy machine). Each rate is the median of a few passes after a warm-up; passes stop
early once they exceed a time budget, so a busy machine does not make the script run for minutes.
Nothing is downloaded (HF_HUB_OFFLINE=1 is set before the model is imported). Prints figures;
asserts nothing.

Run alone: .venv/bin/python benchmarks/bench_embeddings.py [--queries 500] [--reps 5] [--budget 30]
           [--threads 1,2] [--embed-runtime onnx|torch]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from dbarch_pipeline.memory import embeddings  # noqa: E402
from dbarch_pipeline.memory.embeddings import Embedder  # noqa: E402

SCHEMA = {
    "behavior_log": ["id", "user_id", "event_type", "metadata", '"timestamp"', "session_id"],
    "users": ["id", "email", "name", "plan", "country", "created_at"],
    "user_progress": ["id", "user_id", "lesson_id", "status", "progress_pct", "updated_at"],
    "lessons": ["id", "course_id", "title", "position", "duration_s"],
    "courses": ["id", "title", "category", "price_cents", "published_at"],
    "orders": ["id", "user_id", "course_id", "amount_cents", "status", "created_at"],
}


def sql_statements(n: int, seed: int = 7) -> list[str]:
    """n distinct normalized statements of the shapes a web application sends."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        table = rng.choice(list(SCHEMA))
        cols = SCHEMA[table]
        kind = rng.choices(["select", "join", "agg", "update", "insert", "delete"], [5, 2, 2, 3, 1, 1])[0]
        picked = rng.sample(cols[1:], k=min(len(cols) - 1, rng.randint(1, 3)))
        where = " AND ".join(f"{c} {rng.choice(['=', '>=', '<', '='])} ${i}" for i, c in enumerate(picked, 1))
        p = len(picked) + 1
        if kind == "select":
            shown = ", ".join(rng.sample(cols, k=rng.randint(2, len(cols))))
            text = f"SELECT {shown} FROM {table} WHERE {where}"
            if rng.random() < 0.6:
                text += f" ORDER BY {rng.choice(cols)} {rng.choice(['ASC', 'DESC'])} LIMIT ${p}"
        elif kind == "join":
            other = rng.choice([t for t in SCHEMA if t != table])
            text = (f"SELECT a.{cols[0]}, b.{SCHEMA[other][1]} FROM {table} a JOIN {other} b "
                    f"ON b.id = a.{rng.choice(cols[1:])} WHERE a.{picked[0]} = $1")
        elif kind == "agg":
            group = rng.choice(cols[1:])
            text = f"SELECT {group}, count(*) FROM {table} WHERE {where} GROUP BY {group}"
        elif kind == "update":
            target = rng.choice(cols[1:])
            text = f"UPDATE {table} SET {target} = ${p}, updated_at = now() WHERE {where}"
        elif kind == "insert":
            ins = cols[1:1 + rng.randint(2, len(cols) - 1)]
            text = (f"INSERT INTO {table} ({', '.join(ins)}) VALUES "
                    f"({', '.join(f'${i}' for i in range(1, len(ins) + 1))})")
        else:
            text = f"DELETE FROM {table} WHERE {where}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--budget", type=float, default=30.0,
                        help="stop adding passes at a batch size once they took this many seconds")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to compare, e.g. 1,2")
    parser.add_argument("--embed-runtime", choices=("onnx", "torch"), help="default: dbarch's choice")
    args = parser.parse_args(argv)
    if args.embed_runtime:
        os.environ[embeddings.RUNTIME_ENV] = args.embed_runtime

    texts = sql_statements(args.queries)
    mean_len = statistics.fmean(len(t) for t in texts)
    print(f"== Embeddings: {embeddings.MODEL_NAME}, {len(texts)} distinct normalized statements "
          f"(mean {mean_len:.0f} chars), up to {args.reps} timed passes per batch size "
          f"(median; at most ~{args.budget:.0f} s each) ==")

    probe = Embedder()
    t = time.perf_counter()
    runtime = probe.runtime          # loads the model: what the first embed() of a process pays
    load_s = time.perf_counter() - t
    print(f"runtime {runtime}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"model load: {load_s * 1000:.0f} ms ({probe.model_path})")
    t = time.perf_counter()
    probe.embed_one(texts[0])
    print(f"first call after load (1 statement): {(time.perf_counter() - t) * 1000:.1f} ms")

    summary: dict = {"model_load_ms": load_s * 1000, "runtime": runtime}
    for threads in [int(x) for x in args.threads.split(",") if x.strip()]:
        if runtime == "torch":
            import torch

            torch.set_num_threads(threads)
        else:           # an ONNX Runtime session's threads are fixed when it is created
            os.environ[embeddings.THREADS_ENV] = str(threads)
            embeddings._onnx_models.clear()
        print(f"-- {runtime} threads {threads} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        summary[threads] = _rates(texts, args)
    if sum(isinstance(k, int) for k in summary) > 1:
        best = {b: max((k for k in summary if isinstance(k, int)), key=lambda k: summary[k][f"batch_{b}_qps"])
                for b in (1, 64)}
        print(f"fastest: {best[1]} thread(s) at batch 1, {best[64]} at batch 64")
    print(f"load average (1/5/15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs - other processes skew these figures")
    return summary


def _rates(texts: list[str], args) -> dict:
    summary: dict = {}
    for batch_size in (1, 64):
        embedder = Embedder(batch_size=batch_size)
        embedder.embed(texts[:64])  # warm-up at this batch size
        passes = []
        for _ in range(args.reps):
            t = time.perf_counter()
            vectors = embedder.embed(texts)
            passes.append(time.perf_counter() - t)
            if sum(passes) > args.budget:   # keep the script short on a slow or busy machine
                break
        norms = np.linalg.norm(vectors, axis=1)
        if vectors.shape != (len(texts), embeddings.DIMENSIONS):  # sanity, not timing
            raise RuntimeError(f"unexpected embedding shape {vectors.shape}")
        median_s = statistics.median(passes)
        rate = len(texts) / median_s
        best = len(texts) / min(passes)
        summary[f"batch_{batch_size}_qps"] = rate
        summary[f"batch_{batch_size}_best_qps"] = best
        print(f"  batch size {batch_size:>2}: {rate:8.1f} queries/s median, {best:.1f} best  "
              f"({1000 * median_s / len(texts):.2f} ms/query; passes "
              f"{', '.join(f'{p * 1000:.0f}' for p in passes)} ms; |v| {norms.min():.4f}..{norms.max():.4f})")
    print(f"  batch 64 / batch 1: {summary['batch_64_qps'] / summary['batch_1_qps']:.1f}x (median), "
          f"{summary['batch_64_best_qps'] / summary['batch_1_best_qps']:.1f}x (best)")
    return summary


if __name__ == "__main__":
    main()
