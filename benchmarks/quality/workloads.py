"""The quality suite's workloads: what each loads, the statements it runs, and how it draws values.

A workload is a schema with data, a list of parametrised statements (psycopg `%s` placeholders, so
they reach the server as `$n` and pg_stat_statements normalizes them), how often each runs, and a
way to draw realistic values for them from the loaded data. Three are defined: the project's demo
(learning platform), `shop` (an e-commerce schema written for this suite, SQL beside this file) and
`tpch` (in tpch.py).
"""

from __future__ import annotations

import argparse
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8Dumper

from dbarch_pipeline import demo

HERE = Path(__file__).resolve().parent
Progress = Callable[[str], None]
Args = Callable[[dict, random.Random], tuple]


@dataclass(frozen=True)
class Statement:
    name: str
    text: str           # psycopg placeholders (%s); a literal percent sign is written %%
    calls: int          # calls per workload run, the weight of the statement in the total time
    expect: str         # what an expert would conclude, printed beside the results
    args: Args          # draws one set of values from the workload's samples
    replay_sets: int = 5  # parameter sets timed per configuration (fewer for long analytic queries)

    @property
    def pg_text(self) -> str:
        """The text as the server (and pg_stat_statements) sees it: `$1, $2, ...` for the `%s`."""
        counter = iter(range(1, 1000))
        text = re.sub(r"%s", lambda _m: f"${next(counter)}", self.text)
        return text.replace("%%", "%")

    @property
    def is_read(self) -> bool:
        return self.text.lstrip().upper().startswith(("SELECT", "WITH"))


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    statements: list[Statement]
    load: Callable[[psycopg.Connection, argparse.Namespace, Progress], dict[str, int]]
    samples: Callable[[psycopg.Connection, random.Random], dict]
    hand_sql: Path
    # audit settings passed to dbarch (AuditSettingsResource fields)
    audit_settings: dict = field(default_factory=dict)


def bind_ints_as_bigint(conn: psycopg.Connection) -> None:
    """Send every Python int as bigint. psycopg 3 picks int2, int4 or int8 by the value, and
    pg_stat_statements then splits one statement into a queryid per parameter type; dbarch's
    optimization_log upsert fails on two such queryids with one fingerprint and one index
    (CardinalityViolation), so by default the suite binds one type (--mixed-int-types keeps psycopg's
    choice and reproduces the failure)."""
    conn.adapters.register_dumper(int, Int8Dumper)


def run_sql_file(conn: psycopg.Connection, path: Path, progress: Progress) -> None:
    """Run a file of parameterless statements one by one, reporting the slow ones."""
    for statement in split_sql(path.read_text()):
        t = time.perf_counter()
        conn.execute(sql.SQL(statement))
        seconds = time.perf_counter() - t
        if seconds > 1:
            first = " ".join(line for line in statement.splitlines() if not line.startswith("--"))
            progress(f"  {first[:70]}… ({seconds:.1f}s)")


def split_sql(text: str) -> list[str]:
    """Statements of a file with no semicolons inside literals (true of the files of this suite)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def table_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in tables}


# -- demo ---------------------------------------------------------------------------------------------

def _demo_load(conn: psycopg.Connection, args: argparse.Namespace, progress: Progress) -> dict[str, int]:
    return demo.load(conn, demo.Scale(behavior_rows=args.rows), progress=progress)


def _demo_statement(q: demo.WorkloadQuery) -> Statement:
    # the demo's own value drawing, so the suite runs exactly the workload `dbarch demo` runs
    return Statement(q.name, q.text, q.calls, q.expect, lambda s, rng, q=q: demo._args(q, s, rng))


DEMO = Workload(
    name="demo", title="demo: learning platform (dbarch_pipeline.demo)",
    statements=[_demo_statement(q) for q in demo.WORKLOAD],
    load=_demo_load, samples=demo._samples, hand_sql=HERE / "hand_demo.sql",
)


# -- shop ---------------------------------------------------------------------------------------------

SHOP_START = datetime(2023, 1, 1, tzinfo=timezone.utc)
SHOP_DAYS = 1095
COUNTRIES = ["US", "DE", "GB", "FR", "VN", "JP", "BR", "IN", "CA", "AU"]


def _shop_load(conn: psycopg.Connection, args: argparse.Namespace, progress: Progress) -> dict[str, int]:
    run_sql_file(conn, HERE / "shop_schema.sql", progress)
    run_sql_file(conn, HERE / "shop_data.sql", progress)
    return table_counts(conn, ["customers", "categories", "products", "orders", "order_items"])


def _shop_samples(conn: psycopg.Connection, rng: random.Random) -> dict:
    """Values the application would send: customers and products weighted by their activity."""
    def column(query: str) -> list:
        return [r[0] for r in conn.execute(query)]

    return {
        "customers": column("SELECT customer_id FROM orders TABLESAMPLE SYSTEM (1) REPEATABLE (3) LIMIT 500"),
        "emails": column("SELECT email FROM customers TABLESAMPLE BERNOULLI (1) REPEATABLE (5) LIMIT 300"),
        "prefixes": column("SELECT DISTINCT split_part(name, ' ', 1) || ' ' || split_part(name, ' ', 2) || ' ' "
                           "FROM products TABLESAMPLE BERNOULLI (2) REPEATABLE (9) LIMIT 200"),
        "attrs": column("SELECT jsonb_build_object('brand', attrs->'brand', 'color', attrs->'color') "
                        "FROM products TABLESAMPLE BERNOULLI (1) REPEATABLE (11) LIMIT 200"),
        "products": column("SELECT product_id FROM order_items TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT 300"),
        "max_order": conn.execute("SELECT max(id) FROM orders").fetchone()[0],
    }


def _shop_day(rng: random.Random) -> datetime:
    return SHOP_START + timedelta(days=rng.randint(0, SHOP_DAYS - 31))


def _country(rng: random.Random) -> str:
    # the same skew as the data: the first countries are the busiest
    return COUNTRIES[min(len(COUNTRIES) - 1, int(len(COUNTRIES) * rng.random() ** 2))]


def _country_month(rng: random.Random) -> tuple:
    start = _shop_day(rng)
    return (_country(rng), start, start + timedelta(days=30))


def _email_variant(email: str, rng: random.Random) -> str:
    return rng.choice([email.lower(), email.upper(), email])


SHOP_STATEMENTS = [
    Statement("customer_recent_orders",
              "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = %s "
              "ORDER BY created_at DESC LIMIT %s", 40,
              "missing orders (customer_id, created_at): unindexed FK + ORDER BY ... LIMIT",
              lambda s, rng: (rng.choice(s["customers"]), 20)),
    Statement("country_orders_month",
              "SELECT count(*), sum(total_cents) FROM orders WHERE shipping_country = %s "
              "AND created_at >= %s AND created_at < %s", 20,
              "missing orders (shipping_country, created_at): equality + range",
              lambda s, rng: _country_month(rng)),
    Statement("login_by_email",
              "SELECT id, full_name, tier FROM customers WHERE lower(email) = lower(%s)", 30,
              "missing expression index customers (lower(email))",
              lambda s, rng: (_email_variant(rng.choice(s["emails"]), rng),)),
    Statement("customer_by_email",
              "SELECT id, full_name, tier FROM customers WHERE email = %s", 60,
              "fine: unique index on email",
              lambda s, rng: (rng.choice(s["emails"]),)),
    Statement("product_name_prefix",
              "SELECT id, sku, name, price_cents FROM products WHERE name LIKE %s", 30,
              "missing products (name) for LIKE 'prefix%' (C collation: plain btree)",
              lambda s, rng: (rng.choice(s["prefixes"]) + "%",)),
    Statement("products_by_attrs",
              "SELECT id, name, price_cents FROM products WHERE attrs @> %s", 30,
              "missing GIN products (attrs jsonb_path_ops)",
              lambda s, rng: (Jsonb(rng.choice(s["attrs"])),)),
    Statement("customer_order_lines",
              "SELECT o.id, o.created_at, oi.product_id, oi.quantity FROM orders o "
              "JOIN order_items oi ON oi.order_id = o.id WHERE o.customer_id = %s", 30,
              "missing orders (customer_id) and order_items (order_id): join on unindexed FKs",
              lambda s, rng: (rng.choice(s["customers"]),)),
    Statement("refund_queue",
              "SELECT id, customer_id, total_cents, created_at FROM orders WHERE status = %s "
              "ORDER BY created_at", 20,
              "rare status (0.25%): partial index orders (created_at) WHERE status = 'refund_requested'",
              lambda s, rng: ("refund_requested",)),
    Statement("product_sales_since",
              "SELECT sum(oi.quantity), sum(oi.quantity * oi.unit_price_cents) FROM order_items oi "
              "JOIN orders o ON o.id = oi.order_id WHERE oi.product_id = %s AND o.created_at >= %s", 20,
              "missing order_items (product_id)",
              lambda s, rng: (rng.choice(s["products"]), SHOP_START + timedelta(days=rng.randint(700, 1000)))),
    Statement("order_detail",
              "SELECT o.id, o.status, o.total_cents, c.email, c.full_name FROM orders o "
              "JOIN customers c ON c.id = o.customer_id WHERE o.id = %s", 60,
              "fine: primary keys",
              lambda s, rng: (rng.randint(1, s["max_order"]),)),
    Statement("status_totals",
              "SELECT status, count(*), sum(total_cents) FROM orders GROUP BY status", 6,
              "full-table aggregate: no index helps",
              lambda s, rng: (), replay_sets=2),
    Statement("subcategories",
              "SELECT id, name, slug FROM categories WHERE parent_id = %s", 40,
              "small table (200 rows): not worth an index",
              lambda s, rng: (rng.randint(1, 20),)),
    Statement("place_order",
              "INSERT INTO orders (customer_id, status, shipping_country, total_cents, created_at) "
              "VALUES (%s, %s, %s, %s, %s)", 100, "write",
              lambda s, rng: (rng.choice(s["customers"]), "pending", _country(rng), rng.randint(1000, 30000),
                              SHOP_START + timedelta(days=SHOP_DAYS))),
    Statement("add_order_item",
              "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (%s, %s, %s, %s)",
              200, "write",
              lambda s, rng: (rng.randint(1, s["max_order"]), rng.choice(s["products"]), rng.randint(1, 4),
                              rng.randint(500, 20000))),
    Statement("update_order_status",
              "UPDATE orders SET status = %s WHERE id = %s", 100, "write",
              lambda s, rng: (rng.choice(["shipped", "delivered"]), rng.randint(1, s["max_order"]))),
]

SHOP = Workload(
    name="shop", title="shop: e-commerce (benchmarks/quality/shop_*.sql)",
    statements=SHOP_STATEMENTS, load=_shop_load, samples=_shop_samples,
    hand_sql=HERE / "hand_shop.sql",
)


def all_workloads() -> dict[str, Workload]:
    from .tpch import TPCH

    return {"demo": DEMO, "shop": SHOP, "tpch": TPCH}
