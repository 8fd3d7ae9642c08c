"""Benchmark: the gain of a known-good index, measured with three kinds of parameter values.

The issue's three statements, on a table of accounts whose e-mail addresses all start alike
(`dbarch_bench_params` on the embedded PostgreSQL, `--rows` rows):

  A  SELECT id FROM accounts WHERE email LIKE $1               -- the application looks one account up
  B  SELECT id FROM accounts WHERE payload @> $1::jsonb        -- documents of three keys
  C  SELECT count(*) FROM accounts WHERE created_at > now() - $1::interval   -- the last hours

The application runs its workload (its own values; the server logs a sample of them), then each
statement's right index (text_pattern_ops btree, GIN jsonb_path_ops, btree) is measured by the
benchmark runner with:

  old         the rule dbarch used before: the first three characters of a sampled value, a
              one-key document, and a column value for an interval (which PostgreSQL rejects);
  calibrated  bench/params.py without the log: typed by PostgreSQL, solved, calibrated to rows/calls;
  observed    the values read back from the server log (bench/observed.py).

Prints, per statement and source, the rows one call returns against the application's rows/calls,
the baseline and indexed medians and the measured gain. Asserts nothing. The database is dropped at
the end.

Run alone: .venv/bin/python benchmarks/bench_param_values.py [--rows 400000] [--calls 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
from datetime import datetime, timezone

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402

from dbarch_pipeline import embedded  # noqa: E402
from dbarch_pipeline.advisor.catalog import Catalog  # noqa: E402
from dbarch_pipeline.audit import analyze_with_catalog  # noqa: E402
from dbarch_pipeline.bench import observed  # noqa: E402
from dbarch_pipeline.bench.measure import measure  # noqa: E402
from dbarch_pipeline.bench.params import ParameterPlan, ValueTarget, plan_parameters  # noqa: E402
from dbarch_pipeline.bench.runner import BenchSettings, Prepared, evaluate_candidate, prepare  # noqa: E402
from dbarch_pipeline.db import rolled_back  # noqa: E402
from dbarch_pipeline.memory.fingerprint import fingerprint  # noqa: E402
from dbarch_pipeline.memory.store import ensure_schema  # noqa: E402
from dbarch_pipeline.models import IndexCandidate, SlowQuery  # noqa: E402

DB, STORE = "dbarch_bench_params", "dbarch_bench_params_store"
STATEMENTS = {
    "A": ("SELECT id FROM accounts WHERE email LIKE $1",
          IndexCandidate("public", "accounts", ("email",), "LIKE prefix", opclasses=("text_pattern_ops",))),
    "B": ("SELECT id FROM accounts WHERE payload @> $1::jsonb",
          IndexCandidate("public", "accounts", ("payload",), "jsonb containment", method="gin",
                         opclasses=("jsonb_path_ops",))),
    "C": ("SELECT count(*) FROM accounts WHERE created_at > now() - $1::interval",
          IndexCandidate("public", "accounts", ("created_at",), "range")),
}


def load(conn: psycopg.Connection, rows: int) -> None:
    conn.execute("""
        CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL,
                               payload jsonb NOT NULL)""")
    conn.execute("SELECT setseed(0.42)")
    conn.execute("""
        INSERT INTO accounts
        SELECT g, 'user' || g || '@example.com', now() - make_interval(secs => random() * 365 * 86400),
               jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[1 + g %% 3], 'country', 'c' || g %% 50,
                                  'ref', 'r' || g %% 5000, 'active', g %% 7 <> 0)
        FROM generate_series(1, %s) g""", (rows,))
    conn.execute("VACUUM ANALYZE accounts")


def application(conn: psycopg.Connection, calls: int, rows: int) -> None:
    """What the application sends: one account's full prefix, three-key documents, recent hours."""
    rng = random.Random(7)
    conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)")
    for _ in range(calls):
        g = rng.randrange(1, rows)
        conn.execute(STATEMENTS["A"][0].replace("$1", "%s"), (f"user{g}@%",))
        doc = {"plan": ["free", "pro", "team"][g % 3], "country": f"c{g % 50}", "ref": f"r{g % 5000}"}
        conn.execute(STATEMENTS["B"][0].replace("$1", "%s"), (json.dumps(doc),))
        conn.execute(STATEMENTS["C"][0].replace("$1", "%s"), (f"{rng.randrange(1, 24)} hours",))


def slow_queries(conn: psycopg.Connection) -> dict[str, SlowQuery]:
    now = datetime.now(timezone.utc)
    out = {}
    for key, (query, _cand) in STATEMENTS.items():
        row = conn.execute("SELECT queryid, query, calls, total_exec_time, mean_exec_time, rows "
                           "FROM pg_stat_statements WHERE query = %s", (query,)).fetchone()
        out[key] = SlowQuery(queryid=row[0], query_text=row[1], fingerprint=fingerprint(row[1]), calls=row[2],
                             total_exec_ms=row[3], mean_exec_ms=row[4], rows=row[5], shared_blks_hit=0,
                             shared_blks_read=0, captured_at=now)
    return out


def old_values(conn: psycopg.Connection, key: str) -> list[tuple[str, ...]]:
    """The former rule, applied to sampled rows."""
    sampled = conn.execute("SELECT email, payload::text, created_at::text FROM accounts "
                           "TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT 4").fetchall()
    if key == "A":
        return [(email[:3] + "%",) for email, _, _ in sampled]
    if key == "B":
        return [(json.dumps({k: v}),) for (_, doc, _), k in zip(sampled, ["active", "country", "plan", "ref"])
                for v in [json.loads(doc)[k]]]
    return [(created,) for _, _, created in sampled]


def run(conn: psycopg.Connection, q: SlowQuery, cand: IndexCandidate, settings: BenchSettings,
        source: str, seen: list | None) -> dict:
    catalog = Catalog(conn)
    shape = analyze_with_catalog(q.query_text, catalog)
    target = ValueTarget(q.rows / q.calls, q.mean_exec_ms)
    if source == "old":
        sets = old_values(conn, next(k for k, v in STATEMENTS.items() if v[0] == q.query_text))
        item = Prepared(q.queryid, q.query_text, shape, sets, plan_parameters(shape))
        try:
            with rolled_back(conn, statement_timeout_ms=30_000, lock_timeout_ms=2_000):
                item.baseline = measure(conn, q.query_text, sets, has_params=True, runs=settings.runs,
                                        warmup=settings.warmup, param_count=1)
        except psycopg.Error as exc:
            return {"error": str(exc).strip().splitlines()[0], "values": sets[:1]}
    else:
        item = prepare(conn, q.queryid, q.query_text, shape, catalog, settings, target=target,
                       observed=seen if source == "observed" else None)
        if not item.param_sets:
            return {"error": "; ".join(item.plan.problems), "values": []}
    rows_per_call = [conn.execute(q.query_text.replace("SELECT id", "SELECT count(*)").replace("$1", "%s"),
                                  s).fetchone()[0] if "count(*)" not in q.query_text else None
                     for s in item.param_sets]
    (result,) = evaluate_candidate(conn, cand, [item], [], settings)
    return {"values": item.param_sets[:2], "rows": rows_per_call, "ms_before": result["ms_before"],
            "ms_after": result["ms_after"], "gain": result["measured_gain_pct"],
            "sources": (item.plan.evidence().get("source_counts") if isinstance(item.plan, ParameterPlan) else None)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--calls", type=int, default=60)
    args = parser.parse_args(argv)
    embedded.start()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    url, store_url = embedded.recreate_database(DB), embedded.recreate_database(STORE, pg_stat_statements=False)
    results: dict = {}
    try:
        with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(store_url, autocommit=True) as store:
            ensure_schema(store)
            load(conn, args.rows)
            application(conn, args.calls, args.rows)
            queries = slow_queries(conn)
            summary = observed.collect(conn, store, target=DB, database=DB, queries=list(queries.values()),
                                       settings=observed.ObservedSettings())
            print(f"observed: {summary.get('observed_values')} parameter sets of "
                  f"{summary.get('observed_statements')} statements read from the server log")
            seen = observed.load(store, DB, [q.fingerprint for q in queries.values()], observed.ObservedSettings())
            settings = BenchSettings(runs=5, param_sets=4, measure_write_cost=False)
            for key, (query, cand) in STATEMENTS.items():
                q = queries[key]
                print(f"\n{key}  {query}\n   application: {q.calls} calls, {q.rows / q.calls:.1f} rows/call, "
                      f"mean {q.mean_exec_ms:.2f} ms;  index {cand.label()}")
                for source in ("old", "calibrated", "observed"):
                    r = run(conn, q, cand, settings, source, seen.get(q.fingerprint))
                    results[(key, source)] = r
                    if "error" in r:
                        print(f"   {source:10} not measured: {r['error']}")
                        continue
                    rows = "" if r["rows"][0] is None else f"rows/call {sum(r['rows']) / len(r['rows']):.1f}  "
                    print(f"   {source:10} {rows}{r['ms_before']:.2f} ms -> {r['ms_after']:.2f} ms  gain "
                          f"{r['gain']:.1f}%  values e.g. {r['values'][0]}")
    finally:
        embedded.drop_database(DB)
        embedded.drop_database(STORE)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return results


if __name__ == "__main__":
    main()
