"""Which way of toggling indexes gives an unbiased interleaved A/B? (the evidence behind measure.interleaved)

The quality suite decides "harmful" by timing a statement in alternating rounds with and without the
indexes it is exposed to. Two ways to remove them for the "without" arm:

  rebuild   drop them for real and re-create them between the arms (what measure.interleaved does):
            both arms run with a warm relation cache, as the application does; costs index builds
  in-tx     inside each timed execution's rolled-back transaction, DROP INDEX before the statement:
            no build, but the DROP invalidates the table's relation cache, so every "without"
            execution opens and plans the table cold; the "with" arm runs warm
  in-tx+    the same, and the "with" arm drops a throwaway index on the same table first (an
            equivalent invalidation, so both arms pay the cold open)

On a table shaped like the generated suite's child table, three statements are compared with each
method: a batch INSERT into a table given 8 more indexes (a real, large slowdown), the suite's
`update_child_price` (non-HOT: it sets two indexed columns, so every index of the table gets an entry)
and a one-row INSERT into the event-like table with its three indexes. Prints, per statement and
method, the with/without medians over rounds and the median per-round ratio.

Run: .venv/bin/python benchmarks/quality/ab_toggle.py [--rows 200000] [--rounds 5] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from dbarch_pipeline import embedded  # noqa: E402
from dbarch_pipeline.embedded import drop_database, recreate_database  # noqa: E402

from benchmarks.quality import measure  # noqa: E402
from benchmarks.quality.workloads import Statement, bind_ints_as_bigint  # noqa: E402

DB = "dbarch_ab_toggle"

SCHEMA = """
CREATE TABLE child (id bigserial PRIMARY KEY, parent_id bigint, sku text, title text, price_cents int,
                    category int, status text, updated_at timestamptz, deleted_at timestamptz);
INSERT INTO child (parent_id, sku, title, price_cents, category, status, updated_at, deleted_at)
SELECT (random() * 20000)::int, md5(g::text), 'title ' || md5((g * 3)::text), (random() * 100000)::int,
       (random() * 40)::int, CASE WHEN g % 300 = 0 THEN 'refund' ELSE 'ok' END,
       now() - g * interval '1 second', CASE WHEN g % 20 = 0 THEN now() END
FROM generate_series(1, {rows}) g;
CREATE TABLE event (id bigserial PRIMARY KEY, child_id bigint, parent_id bigint, kind text, amount numeric,
                    code text, happened_at timestamptz);
INSERT INTO event (child_id, parent_id, kind, amount, code, happened_at)
SELECT (random() * {rows})::int, (random() * 20000)::int, 'k' || (g % 12), g % 500, md5(g::text),
       now() - g * interval '1 second' FROM generate_series(1, {rows}) g;
VACUUM ANALYZE;
"""

CHILD_INDEXES = ["parent_id", "title", "price_cents", "status, updated_at", "deleted_at", "category", "sku", "updated_at"]
EVENT_INDEXES = ["child_id", "parent_id", "happened_at"]


def _cases(rows: int) -> list[tuple[Statement, list[tuple], str, list[str]]]:
    batch = Statement("insert_batch_8_indexes",
                      "INSERT INTO child (parent_id, sku, title, price_cents, category, status, updated_at) "
                      "SELECT g, md5(g::text), 'new ' || g, g * 7, g %% 40, 'ok', now() "
                      "FROM generate_series(1, %s) g", 1, "write", lambda *_: (50,))
    update = Statement("update_child_price", "UPDATE child SET price_cents = %s, updated_at = now() WHERE id = %s",
                       1, "write", lambda *_: ())
    insert = Statement("insert_event", "INSERT INTO event (child_id, parent_id, kind, amount, code, happened_at) "
                       "VALUES (%s, %s, %s, %s, md5(random()::text), now())", 1, "write", lambda *_: ())
    return [(batch, [(50,)] * 3, "child", CHILD_INDEXES),
            (update, [(1000 + 37 * k, 1 + (rows // 7) * k) for k in range(5)], "child", CHILD_INDEXES[:6]),
            (insert, [(11 * k, 3 * k, f"k{k}", 10 * k) for k in range(1, 6)], "event", EVENT_INDEXES)]


def _ddl(table: str, cols: str) -> str:
    return f"CREATE INDEX ix_{table}_{cols.replace(', ', '_')} ON {table} ({cols})"


def _timed(conn: psycopg.Connection, st: Statement, params: tuple, pre: list[str]) -> float:
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        for p in pre:
            cur.execute(sql.SQL(p))
        t = time.perf_counter()
        cur.execute(sql.SQL(st.text), params)
        return 1000 * (time.perf_counter() - t)


def _arm_in_tx(conn, st, param_sets, runs, pre) -> float:
    medians = []
    for params in param_sets:
        _timed(conn, st, params, pre)
        medians.append(statistics.median(_timed(conn, st, params, pre) for _ in range(runs)))
    return statistics.fmean(medians)


def _in_tx(conn, st, param_sets, names, runs, rounds, dummy: str | None) -> list[tuple[float, float]]:
    drop = [f"DROP INDEX {n}" for n in names]
    with_pre = [f"DROP INDEX {dummy}"] if dummy else []
    return [(_arm_in_tx(conn, st, param_sets, runs, with_pre), _arm_in_tx(conn, st, param_sets, runs, drop))
            for _ in range(rounds)]


def _summary(rounds: list[tuple[float, float]]) -> str:
    ratio = statistics.median(w / wo for w, wo in rounds)
    return (f"with {statistics.median(w for w, _ in rounds):7.3f} ms, without "
            f"{statistics.median(wo for _, wo in rounds):7.3f} ms, ratio {ratio:5.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per parameter set in each arm")
    args = parser.parse_args(argv)
    embedded.start()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    url = recreate_database(DB, pg_stat_statements=False)
    try:
        with measure.measurement_connection(url) as conn:
            bind_ints_as_bigint(conn)
            for stmt in SCHEMA.format(rows=args.rows).split(";"):
                if stmt.strip():
                    conn.execute(sql.SQL(stmt))
            for st, param_sets, table, cols in _cases(args.rows):
                applied = measure.apply(conn, [sql.SQL(_ddl(table, c)) for c in cols])
                conn.execute(sql.SQL(f"CREATE INDEX ix_dummy ON {table} (id) WHERE false"))
                started = time.perf_counter()
                rebuilt = measure.interleaved(conn, st, param_sets, applied.added, args.runs, args.rounds)
                rebuild_s = time.perf_counter() - started
                names = [ix.name for ix in applied.added]
                started = time.perf_counter()
                cold = _in_tx(conn, st, param_sets, names, args.runs, args.rounds, None)
                equal = _in_tx(conn, st, param_sets, names, args.runs, args.rounds, "ix_dummy")
                in_tx_s = time.perf_counter() - started
                print(f"\n{st.name} ({len(cols)} indexes on {table}):")
                print(f"  rebuild  {_summary(rebuilt.rounds)}  ({rebuild_s:.1f}s)")
                print(f"  in-tx    {_summary(cold)}")
                print(f"  in-tx+   {_summary(equal)}  (both in-tx: {in_tx_s:.1f}s)")
                conn.execute("DROP INDEX ix_dummy")
                measure.drop(conn, applied)
    finally:
        drop_database(DB)
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
