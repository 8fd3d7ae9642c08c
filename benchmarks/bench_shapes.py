"""Benchmark: statement shapes outside the generated suite's grammar, audited as a new user would.

A marketplace-like schema (users 300k rows, orders 1.2M; NULL-heavy, jsonb and numeric columns) and
38 statements an application of that kind sends: OR over two columns, typed literals
(`interval '60 days'`, which pg_stat_statements keeps as `interval $2`), keyset pagination, a queue
claim with `FOR UPDATE SKIP LOCKED`, anti- and semi-joins, `DISTINCT ON`, window functions, `IS NOT
NULL` on a mostly NULL column, a float bound for a numeric column, jsonb `->>`, `date_trunc`, slow
UPDATE / DELETE by a WHERE, and statements no index serves. The application binds its values
(psycopg), dbarch sees them only through pg_stat_statements and, with `--log on`, the server log.
The real audit runs (Dagster, Gemini off, `top_n` above the statement count so that every one is
considered); then each statement is replayed with the application's
values, with no index and with the indexes dbarch chose, and the speedup printed with the reason
dbarch gave for the ones it did not serve. Asserts nothing.

These shapes were written after the generated suite, to find what it does not draw: they are the
mechanisms' regression check, not an unseen workload (the shapes dbarch missed here were fixed).

Run alone: .venv/bin/python benchmarks/bench_shapes.py [--log off|on] [--seed 7] [--scale 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from benchmarks.quality.measure import fuzzy, pg_stat_statements  # noqa: E402
from benchmarks.quality.run_generated import audit, set_logging  # noqa: E402
from dbarch_pipeline.embedded import drop_database, recreate_database  # noqa: E402

FIXED = 2.0   # at least 2x faster with dbarch's indexes


def load(conn: psycopg.Connection, users: int, orders: int) -> None:
    conn.execute("""CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, phone text NOT NULL,
        country text NOT NULL, created_at timestamptz NOT NULL, deleted_at timestamptz)""")
    conn.execute("""CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL,
        created_at timestamptz NOT NULL, total numeric NOT NULL, note text, payload jsonb NOT NULL)""")
    conn.execute("""INSERT INTO users SELECT g, 'user' || g || '@ex' || (g %% 97) || '.com', '+1' || (5550000000 + g),
        (ARRAY['us','de','fr','br','in','jp','ng','mx'])[1 + (g %% 8)], now() - (g %% 900) * interval '1 day',
        CASE WHEN g %% 10 = 0 THEN now() END FROM generate_series(1, %s) g""", (users,))
    conn.execute("""INSERT INTO orders SELECT g, 1 + (hashint4(g)::bigint & 2147483647) %% %s,
        (ARRAY['paid','paid','paid','shipped','shipped','cancelled','pending'])[1 + g %% 7],
        now() - (g %% 100000) * interval '13 minutes', (g %% 50000) / 100.0,
        CASE WHEN g %% 5000 = 0 THEN 'gift' END,
        jsonb_build_object('kind', (ARRAY['a','b','c','d','e','f','g','h','i','j'])[1 + g %% 10], 'ref', g %% 100000)
        FROM generate_series(1, %s) g""", (users, orders))
    conn.execute("VACUUM ANALYZE")


def statements(rng: random.Random, users: int, orders: int) -> dict[str, tuple[str, object]]:
    def uid() -> int:
        return rng.randrange(1, users + 1)

    def email() -> str:
        k = uid()
        return f"user{k}@ex{k % 97}.com"

    return {
        "email_or_phone": ("SELECT id FROM users WHERE email = %s OR phone = %s",
                           lambda: (email(), f"+1{5550000000 + uid()}")),
        "pending_old": ("SELECT id, total FROM orders WHERE status = 'pending' AND created_at < now() - interval '60 days'",
                        lambda: ()),
        "live_by_country_recent": ("SELECT id, email FROM users WHERE deleted_at IS NULL AND country = %s "
                                   "ORDER BY created_at DESC LIMIT 20", lambda: (rng.choice(["us", "de", "fr", "br"]),)),
        "users_without_orders": ("SELECT u.id FROM users u WHERE u.country = %s AND u.created_at > now() - interval '3 days' "
                                 "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)",
                                 lambda: (rng.choice(["us", "de"]),)),
        "latest_orders": ("SELECT id, total FROM orders ORDER BY created_at DESC LIMIT 50", lambda: ()),
        "orders_of_users": ("SELECT user_id, max(created_at) FROM orders WHERE user_id = ANY(%s) GROUP BY user_id",
                            lambda: ([uid() for _ in range(5)],)),
        "big_totals": ("SELECT id FROM orders WHERE total > %s * 100", lambda: (rng.choice([498, 499]),)),
        "email_ci": ("SELECT id FROM users WHERE lower(email) = lower(%s)", lambda: (email().capitalize(),)),
        "orders_by_email": ("SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = %s",
                            lambda: (email(),)),
        "no_index_needed": ("SELECT country, count(*) FROM users GROUP BY country", lambda: ()),
        "user_recent_orders": ("SELECT id, total FROM orders WHERE user_id = %s ORDER BY created_at DESC LIMIT 10",
                               lambda: (uid(),)),
        "orders_on_day": ("SELECT count(*) FROM orders WHERE created_at::date = %s::date",
                          lambda: (f"2026-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",)),
        "email_prefix": ("SELECT id FROM users WHERE email LIKE %s", lambda: (f"user{uid()}@%",)),
        "status_in_literals": ("SELECT count(*) FROM orders WHERE status IN ('pending', 'cancelled') AND total > %s",
                               lambda: (rng.choice([495, 499]),)),
        "semi_join_float": ("SELECT id, email FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > %s)",
                            lambda: (rng.choice([499.5, 499.9]),)),
        "not_cancelled": ("SELECT id FROM orders WHERE user_id = %s AND status <> 'cancelled'", lambda: (uid(),)),
        "noted": ("SELECT id, note FROM orders WHERE note IS NOT NULL", lambda: ()),
        "exists_recent": ("SELECT u.id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id "
                          "AND o.created_at > now() - interval '1 hour') AND u.country = %s",
                          lambda: (rng.choice(["jp", "ng"]),)),
        "count_distinct": ("SELECT count(DISTINCT user_id) FROM orders WHERE created_at > %s::timestamptz",
                           lambda: ("2099-01-01",)),
        "phone_suffix": ("SELECT id FROM users WHERE phone LIKE %s", lambda: (f"%{rng.randrange(1000, 9999)}",)),
        "keyset_page": ("SELECT id, total FROM orders WHERE (created_at, id) < (%s::timestamptz, %s) "
                        "ORDER BY created_at DESC, id DESC LIMIT 20", lambda: ("2026-10-01", 10**9)),
        "queue_claim": ("SELECT id FROM orders WHERE status = 'pending' AND total > 499 ORDER BY created_at LIMIT 5 "
                        "FOR UPDATE SKIP LOCKED", lambda: ()),
        "three_way": ("SELECT u.email, o.total, p.note FROM users u JOIN orders o ON o.user_id = u.id "
                      "JOIN orders p ON p.user_id = u.id AND p.id <> o.id WHERE u.phone = %s",
                      lambda: (f"+1{5550000000 + uid()}",)),
        "having": ("SELECT user_id, count(*) FROM orders WHERE created_at > now() - interval '2 days' "
                   "GROUP BY user_id HAVING count(*) > %s", lambda: (1,)),
        "distinct_on": ("SELECT DISTINCT ON (user_id) user_id, id, created_at FROM orders WHERE user_id = ANY(%s) "
                        "ORDER BY user_id, created_at DESC", lambda: ([uid() for _ in range(20)],)),
        "window_rank": ("SELECT id, rank() OVER (ORDER BY total DESC) FROM orders WHERE user_id = %s", lambda: (uid(),)),
        "country_week": ("SELECT count(*) FROM users WHERE country = %s AND created_at >= %s::timestamptz "
                         "AND created_at < %s::timestamptz",
                         lambda: (rng.choice(["us", "de"]), "2025-01-01", "2025-01-08")),
        "lower_in": ("SELECT id FROM users WHERE lower(email) IN (%s, %s, %s)", lambda: (email(), email(), email())),
        "coalesce_filter": ("SELECT id FROM users WHERE coalesce(deleted_at, created_at) > %s::timestamptz",
                            lambda: ("2099-01-01",)),
        "not_in_list": ("SELECT count(*) FROM orders WHERE status NOT IN ('paid', 'shipped') AND user_id = %s",
                        lambda: (uid(),)),
        "json_field": ("SELECT id FROM orders WHERE payload->>'ref' = %s", lambda: (str(rng.randrange(100000)),)),
        "day_trunc": ("SELECT count(*) FROM orders WHERE date_trunc('day', created_at AT TIME ZONE 'UTC') = %s::timestamp",
                      lambda: ("2026-06-01",)),
        "user_range_sorted": ("SELECT id, total FROM orders WHERE user_id = %s AND created_at BETWEEN %s::timestamptz "
                              "AND %s::timestamptz ORDER BY created_at", lambda: (uid(), "2025-01-01", "2026-12-01")),
        "any_array": ("SELECT id FROM users WHERE phone = ANY(%s::text[])",
                      lambda: ([f"+1{5550000000 + uid()}" for _ in range(30)],)),
        "upper_status": ("SELECT count(*) FROM orders WHERE upper(status) = %s AND user_id = %s", lambda: ("PAID", uid())),
        "tenant_name_like": ("SELECT id FROM users WHERE country = %s AND lower(email) LIKE %s",
                             lambda: ("de", f"user{uid()}%")),
        "delete_expired": ("DELETE FROM orders WHERE status = 'expired' AND created_at < now() - interval '400 days'",
                           lambda: ()),
        "update_by_user": ("UPDATE orders SET note = note WHERE user_id = %s AND status = 'pending'", lambda: (uid(),)),
    }


def replay(conn: psycopg.Connection, text: str, sets: list[tuple], runs: int = 3) -> float:
    out = []
    for args in sets:
        with conn.transaction(force_rollback=True):   # the writes leave nothing behind
            times = []
            for _ in range(runs + 1):                  # one warm-up
                started = time.perf_counter()
                cur = conn.execute(text, args)
                if cur.description:
                    cur.fetchall()
                times.append((time.perf_counter() - started) * 1000)
        out.append(statistics.median(times[1:]))
    return statistics.fmean(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", choices=["off", "on"], default="off")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--calls", type=int, default=12, help="application calls per statement")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    users, orders = int(300_000 * args.scale), int(1_200_000 * args.scale)
    print(f"seed {seed}, log {args.log}, users {users:,}, orders {orders:,}", flush=True)
    rng = random.Random(seed)
    url = recreate_database("dbarch_bench_shapes")
    store = recreate_database("dbarch_bench_shapes_store", pg_stat_statements=False)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        load(conn, users, orders)
    print(f"loaded in {time.perf_counter() - started:.0f}s", flush=True)
    set_logging(url, "dbarch_bench_shapes", args.log == "on")
    shapes = statements(rng, users, orders)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(args.calls):
            for text, values in shapes.values():
                conn.execute(text, values())
        conn.execute("SELECT pg_stat_force_next_flush()")
        entries = pg_stat_statements(conn)
    # every statement considered (the default is the week's 20 with the most total time)
    result, seconds = audit(url, store, {"top_n": len(shapes) + 10})
    print(f"audit {seconds:.0f}s, {len(result['indexes'])} indexes"
          + (f"; FAILED {result['error']}" if result.get("error") else ""), flush=True)
    for ix in result["indexes"]:
        print(f"  {ix['ddl']}")
    # what dbarch said of each statement, through its pg_stat_statements entries (by queryid)
    said_of = {q["queryid"]: (q.get("recommendation") or q.get("rewrite") or q.get("why_none")
                              or q.get("unmeasured") or "") for q in result["queries"]}
    said = {}
    for name, (text, _values) in shapes.items():
        ids = [e.queryid for e in entries if fuzzy(e.query) == fuzzy(text.replace("%s", "$1"))]
        said[name] = next((said_of[i] for i in ids if i in said_of), "not among the slow statements")
    rng.seed(seed + 1)   # the replay's own values
    sets = {name: [values() for _ in range(4)] for name, (_text, values) in shapes.items()}
    with psycopg.connect(url, autocommit=True) as conn:
        before = {name: replay(conn, text, sets[name]) for name, (text, _v) in shapes.items()}
        for ix in result["indexes"]:
            conn.execute(ix["ddl"])
        conn.execute("ANALYZE")
        after = {name: replay(conn, text, sets[name]) for name, (text, _v) in shapes.items()}
    fixed = 0
    print(f"\n{'statement':24s} {'no index':>10s} {'dbarch':>10s}  speedup   what dbarch said")
    for name in shapes:
        up = before[name] / max(after[name], 1e-6)
        fixed += up >= FIXED
        print(f"{name:24s} {before[name]:9.2f}  {after[name]:9.2f}  {up:7.1f}x   {' '.join(str(said[name]).split())[:110]}")
    print(f"\n{fixed}/{len(shapes)} statements at least {FIXED:g}x faster with dbarch's {len(result['indexes'])} indexes "
          f"(seed {seed}, log {args.log})")
    print(f"load average: {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f}, {os.getloadavg()[2]:.2f}")
    drop_database("dbarch_bench_shapes")
    drop_database("dbarch_bench_shapes_store")


if __name__ == "__main__":
    main()
