"""What the safety walls cost: the allow-list check per statement (PostgreSQL's parse analysis plus
the catalog look-ups), and the read-only savepoint around each EXPLAIN ANALYZE.

Run: .venv/bin/python benchmarks/bench_safety.py [--rows 100000] [--repeat 200]
Prints medians; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402

from dbarch_pipeline import embedded  # noqa: E402
from dbarch_pipeline.bench.measure import _explain  # noqa: E402
from dbarch_pipeline.db import connect, rolled_back  # noqa: E402
from dbarch_pipeline.safety.allowlist import check_statement  # noqa: E402

STATEMENTS = [
    "SELECT id, label FROM items WHERE owner = $1",
    "SELECT owner, count(*), sum(price) FROM items WHERE label LIKE $1 GROUP BY owner ORDER BY 2 DESC LIMIT 10",
    "WITH t AS (SELECT * FROM items WHERE price > $1) SELECT lower(label), row_number() OVER (ORDER BY id) FROM t",
    "SELECT i.id FROM items i JOIN items j ON j.id = i.owner WHERE i.tags @> $1::jsonb AND j.price BETWEEN $2 AND $3",
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    embedded.start()
    url = embedded.recreate_database("dbarch_bench_safety")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, label text NOT NULL, "
                     "price numeric NOT NULL, tags jsonb NOT NULL)")
        conn.execute("INSERT INTO items SELECT g, g %% 1000, 'item ' || g, g %% 500, jsonb_build_object('k', g %% 7) "
                     "FROM generate_series(1, %s) g", (args.rows,))
        conn.execute("ANALYZE items")
    results: dict = {}
    with connect(url, "sandbox") as conn:
        check_statement(conn, STATEMENTS[0])   # the unsafe built-ins are read once per connection
        times = []
        for _ in range(args.repeat // len(STATEMENTS)):
            for text in STATEMENTS:
                started = time.perf_counter()
                verdict = check_statement(conn, text)
                times.append((time.perf_counter() - started) * 1000)
                assert verdict.ok, verdict.reasons
        results["check_ms_median"] = statistics.median(times)
        results["check_ms_p95"] = sorted(times)[int(len(times) * 0.95)]
        query, params = "SELECT id, label FROM items WHERE owner = $1", ["7"]
        plain, walled = [], []
        with rolled_back(conn, statement_timeout_ms=30_000, lock_timeout_ms=2_000):
            for _ in range(args.repeat):
                started = time.perf_counter()
                conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) SELECT id, label FROM items WHERE owner = 7").fetchone()
                plain.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                _explain(conn, query, "ANALYZE, FORMAT JSON", params)
                walled.append((time.perf_counter() - started) * 1000)
        results["explain_analyze_ms"] = statistics.median(plain)
        results["explain_analyze_read_only_ms"] = statistics.median(walled)
    embedded.drop_database("dbarch_bench_safety")
    load = os.getloadavg()
    print(f"allow-list check per statement: median {results['check_ms_median']:.1f} ms, "
          f"p95 {results['check_ms_p95']:.1f} ms ({len(times)} checks of {len(STATEMENTS)} statements)")
    print(f"EXPLAIN ANALYZE round trip: {results['explain_analyze_ms']:.2f} ms plain, "
          f"{results['explain_analyze_read_only_ms']:.2f} ms inside the read-only savepoint")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return results


if __name__ == "__main__":
    main()
