"""Benchmark: the `dbarch similar` command's wall time, as a user types it, cold and warm.

A throwaway store database (`dbarch_bench_similar_cli`, schema applied by the product) gets
OptimizationLog rows with their vectors in the embedding cache (the real model's for a few hundred
realistic statements, random unit vectors for the rest), as `bench_api_similar.py` fills it. Then the
real command runs as a subprocess (`dbarch similar "<statement>" --store-dsn ...`), each time with a
statement it has never seen (so the statement is embedded, never read from the cache):

- cold: DBARCH_SIMILAR_IDLE_S=0, so every call answers in-process (interpreter, imports, model load);
- warm: the first call answers in-process and starts the warm process (dbarch_pipeline/warm_similar.py);
  after it has loaded, the timed calls go through its unix socket.

Prints p50/p95/max of each series with the load average (`uptime`); asserts nothing. The warm process
is stopped and the database dropped at the end.

Run alone: .venv/bin/python benchmarks/bench_similar_cli.py [--calls 20] [--cold-calls 5] [--rows 2000]
           [--embed-runtime onnx|torch]   (default: dbarch's choice; the runtime is printed)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api_similar import load  # noqa: E402
from bench_embeddings import sql_statements  # noqa: E402
from dbarch_pipeline import embedded, warm_similar  # noqa: E402
from dbarch_pipeline.db import connect  # noqa: E402
from dbarch_pipeline.memory import store  # noqa: E402
from dbarch_pipeline.memory.embeddings import RUNTIME_ENV, Embedder  # noqa: E402
from dbarch_pipeline.memory.fingerprint import normalize  # noqa: E402

DB_NAME = "dbarch_bench_similar_cli"
DBARCH = str(Path(sys.executable).with_name("dbarch"))


def call(statement: str, dsn: str, env: dict) -> float:
    t = time.perf_counter()
    out = subprocess.run([DBARCH, "similar", statement, "--store-dsn", dsn, "--min-similarity", "0.3"],
                         env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if out.returncode != 0 or "similarity" not in out.stdout:
        raise RuntimeError(f"dbarch similar failed ({out.returncode}): {out.stdout[-300:]} {out.stderr[-500:]}")
    return elapsed


def series(name: str, statements: list[str], dsn: str, env: dict) -> None:
    load_before = os.getloadavg()
    times = sorted(call(s, dsn, env) for s in statements)
    p = lambda q: times[int(q * (len(times) - 1))]  # noqa: E731
    print(f"  {name}: {len(times)} calls, p50 {p(0.5):.2f} s, p95 {p(0.95):.2f} s, max {times[-1]:.2f} s "
          f"(load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="warm calls timed")
    parser.add_argument("--cold-calls", type=int, default=5,
                        help="cold calls timed (each loads the model: with torch 5-30 s apiece on a busy machine)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--embed-runtime", choices=("onnx", "torch"),
                        help="the embedding runtime of the command (default: dbarch's choice)")
    args = parser.parse_args(argv)
    if args.embed_runtime:      # this process and the commands it runs
        os.environ[RUNTIME_ENV] = args.embed_runtime

    embedded.start()
    dsn = embedded.recreate_database(DB_NAME, pg_stat_statements=False)
    warm_similar.stop()
    try:
        statements = sql_statements(300 + 3 * args.calls + 2, seed=23)
        stored = statements[:300]
        embedder = Embedder()
        vectors = embedder.embed([normalize(s) for s in stored])
        step = max(1, args.rows // len(stored))
        with connect(dsn, "store") as conn:
            store.ensure_schema(conn)
            load(conn, 0, args.rows, {i * step: (stored[i], vectors[i]) for i in range(len(stored))}, seed=1)
        probes = statements[300:]
        cold_env = {**os.environ, warm_similar.IDLE_ENV: "0"}
        warm_env = {**os.environ, warm_similar.IDLE_ENV: "120"}
        print(f"dbarch similar over {args.rows:,} log rows, statements never seen before "
              f"(embedding with {embedder.describe()}):", flush=True)
        series("cold (in-process every call)", probes[:args.cold_calls], dsn, cold_env)
        first = call(probes[args.calls], dsn, warm_env)
        t = time.perf_counter()
        while warm_similar.status() is None:
            if time.perf_counter() - t > 120:
                raise RuntimeError("the warm process did not start within 120 s")
            time.sleep(0.2)
        print(f"  first call {first:.2f} s (in-process; it starts the warm process, ready "
              f"{time.perf_counter() - t:.1f} s later)", flush=True)
        series("warm (through the warm process)", probes[args.calls + 1:2 * args.calls + 1], dsn, warm_env)
    finally:
        warm_similar.stop()
        embedded.drop_database(DB_NAME)


if __name__ == "__main__":
    main()
