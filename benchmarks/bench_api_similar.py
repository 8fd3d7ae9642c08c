"""Benchmark: GET /admin/database/optimizations/similar over HTTP, warm, at 10k and 100k log rows.

A throwaway store database (`dbarch_bench_api_store` on the embedded PostgreSQL, schema applied by the
product) is filled with OptimizationLog rows, each with its statement's vector in the embedding cache
(random unit vectors for the bulk, the real model's for a few hundred realistic statements, so the
probes have true neighbours); the cache's HNSW index is built once after the bulk COPY, as a
restore would. The admin API runs as `dbarch serve` in its own process (model loaded at startup; the
client in this process never shares its interpreter), and one keep-alive client sends:

- uncached: similar searches for statements never sent before, so every request embeds its query,
  searches the index and reads the log;
- repeated: the same 20 statements over and over (the server's LRU cache of query vectors answers
  after the first of each);
- /healthz: the HTTP and pooled-connection floor under any request.

Warm-up requests first, then the timed ones. Then the two parts of a request are timed in-process
(embedding the statement, uncached; the pooled store search) to show where the time goes, and the
search's EXPLAIN shows whether it uses the HNSW index. Prints p50/p95/max per size with the load
average; asserts nothing. The database is dropped at the end.

Run alone: .venv/bin/python benchmarks/bench_api_similar.py [--sizes 10000 100000] [--requests 300]
           [--torch-threads 1] [--embed-runtime onnx|torch]
The embedding runtime (onnx or torch, same weights) is the server's default unless given, and is printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench_embeddings import sql_statements  # noqa: E402
from dbarch_pipeline import embedded  # noqa: E402
from dbarch_pipeline.api.app import ApiConfig, create_app  # noqa: E402
from dbarch_pipeline.db import connect  # noqa: E402
from dbarch_pipeline.memory import store  # noqa: E402
from dbarch_pipeline.memory.embeddings import MODEL_NAME, RUNTIME_ENV, Embedder  # noqa: E402
from dbarch_pipeline.memory.fingerprint import normalize  # noqa: E402
from dbarch_pipeline.run import audit_resources  # noqa: E402

DB_NAME = "dbarch_bench_api_store"
REAL = 500            # statements embedded by the real model (the rest get random unit vectors)
INDEX = "query_embedding_hnsw_idx"


def load(conn, start: int, stop: int, real: dict[int, tuple[str, np.ndarray]], seed: int) -> None:
    """Log rows start..stop-1 and their cache vectors, by COPY, with the HNSW index dropped meanwhile."""
    rng = np.random.default_rng(seed)
    conn.execute(f"DROP INDEX IF EXISTS dbarch.{INDEX}")
    conn.commit()
    for lo in range(start, stop, 10_000):
        hi = min(stop, lo + 10_000)
        vectors = rng.standard_normal((hi - lo, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cache, rows = [], []
        for i in range(lo, hi):
            text, vector = real.get(i, (f"SELECT * FROM t{i % 97} WHERE c{i % 13} = $1 /* {i} */", vectors[i - lo]))
            fp = f"{i:016x}"
            cache.append((fp, text, MODEL_NAME, vector))
            rows.append({"target": "bench", "fingerprint": fp, "queryid": i, "query_text": text,
                         "recommendation": "an index", "kind": "index", "ddl": f"CREATE INDEX ON t{i % 97} (c)",
                         "performance_gain": 50.0, "estimated_gain": 40.0, "confidence": 0.8, "embedding": None,
                         "evidence": {}, "status": "proposed", "snapshot_id": None})
        store.save_embeddings(conn, cache)
        store.write_optimization_log(conn, rows)
    t = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute(f"CREATE INDEX {INDEX} ON dbarch.query_embedding USING hnsw (embedding vector_cosine_ops)")
    conn.commit()
    print(f"  HNSW index over {stop:,} vectors built in {time.perf_counter() - t:.1f}s", flush=True)


def measure(url: str, probes: list[str], requests: int, warmup: int, path: str = "/admin/database/optimizations/similar") -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(warmup + requests):
            query = probes[n % len(probes)]
            t = time.perf_counter()
            response = client.get(path, params={"query": query, "limit": 5})
            elapsed = (time.perf_counter() - t) * 1000
            if response.status_code != 200 or ("items" in path and not response.json()["items"]):
                raise RuntimeError(f"{path} failed: {response.status_code} {response.text[:300]}")
            if n >= warmup:
                times.append(elapsed)
    return times


class Served:
    """`dbarch serve` in its own process on a free loopback port, as a user runs it."""

    def __init__(self, store_dsn: str, torch_threads: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [str(Path(sys.executable).with_name("dbarch")), "serve", "--port", str(self.port),
                        "--store-dsn", store_dsn, "--torch-threads", str(torch_threads)]

    def __enter__(self) -> "Served":
        env = {k: v for k, v in os.environ.items() if k != "DBARCH_ADMIN_TOKENS"}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dbarch serve exited: {self.process.stderr.read().decode()[-1000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("dbarch serve did not answer within 180 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def explain(conn, vector) -> str:
    """The search's plan, as the store runs it (same SQL, same settings)."""
    from psycopg import sql

    from dbarch_pipeline.db import named

    with conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        rows = conn.execute(sql.SQL("EXPLAIN ") + named("select_similar_optimizations"), {
            "embedding": vector, "limit": 5, "exclude_fingerprint": None, "history": False, "target": None}).fetchall()
    return "\n".join(r[0] for r in rows)


def components(app, probes: list[str], n: int) -> dict[str, list[float]]:
    """The same request's parts in-process, one after another with the server idle: embedding the
    normalized statement (as the endpoint does, with the server's torch threads), and the pooled
    search in the store."""
    service = app.state.dbarch
    out: dict[str, list[float]] = {"embed": [], "search": []}
    for i in range(n):
        t = time.perf_counter()
        vector = service.embed(normalize(probes[i % len(probes)]), cached=False)
        out["embed"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        with service.store_conn() as conn:
            store.similar_optimizations(conn, vector, limit=5)
        out["search"].append((time.perf_counter() - t) * 1000)
    return out


def _p(times: list[float], q: float) -> float:
    times = sorted(times)
    return times[int(q * (len(times) - 1))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--torch-threads", type=int, default=1, help="the server's --torch-threads")
    parser.add_argument("--embed-runtime", choices=("onnx", "torch"),
                        help="the embedding runtime, here and in the server (default: dbarch's choice)")
    args = parser.parse_args(argv)
    if args.embed_runtime:      # this process and the server it starts
        os.environ[RUNTIME_ENV] = args.embed_runtime

    embedded.start()
    url = embedded.recreate_database(DB_NAME, pg_stat_statements=False)
    results: dict = {}
    try:
        embedder = Embedder()
        results["runtime"] = embedder.runtime
        print(f"embedding with {embedder.describe()}", flush=True)
        # probes: statements never stored, and never sent twice in the uncached series
        statements = sql_statements(REAL + args.warmup + args.requests + 20, seed=11)
        vectors = embedder.embed([normalize(s) for s in statements[:REAL]])
        sizes = sorted(args.sizes)
        # the realistic statements spread over the first size's rows
        step = max(1, sizes[0] // REAL)
        real = {i * step: (statements[i], vectors[i]) for i in range(REAL)}
        probes = statements[REAL:]
        loaded = 0
        # the in-process parts: pooled store connections, one torch thread per embedding, as served
        app = create_app(ApiConfig(resources=audit_resources(store_dsn=url), torch_threads=args.torch_threads))
        with connect(url, "store") as conn:
            store.ensure_schema(conn)
            for size in sizes:
                print(f"{size:,} log rows (server: dbarch serve --torch-threads {args.torch_threads}):", flush=True)
                load(conn, loaded, size, real, seed=size)
                loaded = size
                with Served(url, args.torch_threads) as server:
                    row = results[size] = {}
                    series = [("uncached", probes[:args.warmup + args.requests], "/admin/database/optimizations/similar"),
                              ("repeated", probes[-20:], "/admin/database/optimizations/similar"),
                              ("healthz", probes[:1], "/healthz")]
                    for name, sent, path in series:
                        before = os.getloadavg()
                        times = sorted(measure(server.url, sent, args.requests, args.warmup, path))
                        after = os.getloadavg()
                        p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
                        row[name] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(times[-1], 1),
                                     "load": (round(before[0], 2), round(after[0], 2))}
                        print(f"  {name:9} over HTTP, warm, {len(times)} requests: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                              f"max {times[-1]:.1f} ms (load average {before[0]:.2f} -> {after[0]:.2f}, "
                              f"{os.cpu_count()} cores)", flush=True)
                parts = components(app, probes, min(100, args.requests))
                row.update({f"{k}_p50_ms": round(_p(v, 0.5), 1) for k, v in parts.items()})
                row.update({f"{k}_p95_ms": round(_p(v, 0.95), 1) for k, v in parts.items()})
                print(f"  of which, in-process: embedding p50 {_p(parts['embed'], 0.5):.1f} / p95 "
                      f"{_p(parts['embed'], 0.95):.1f} ms, store search p50 {_p(parts['search'], 0.5):.1f} / p95 "
                      f"{_p(parts['search'], 0.95):.1f} ms (load average {os.getloadavg()[0]:.2f})", flush=True)
                plan = explain(conn, embedder.embed_one(normalize(probes[0])))
                print("  plan: " + ("uses " + INDEX if INDEX in plan else "NO HNSW INDEX SCAN:\n" + plan), flush=True)
    finally:
        embedded.drop_database(DB_NAME)
    return results


if __name__ == "__main__":
    main()
