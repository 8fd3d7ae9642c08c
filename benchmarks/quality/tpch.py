"""The TPC-H workload: data from tpchgen-cli (offline), a subset of the queries as bound statements.

Data: `tpchgen-cli csv -s SF` (the Rust generator shipped in the `tpchgen-cli` wheel; install it in
the venv with `pip install tpchgen-cli`) writes one CSV per table into a temporary folder, loaded
with COPY into tables with the specification's types and only primary keys (tpch_schema.sql).

Queries: the TPC-H queries that run in well under a second at SF 0.1-0.3 on a small machine, with
their substitution parameters bound as `$n` (so pg_stat_statements normalizes them) and values drawn
as the specification's qgen does. Derived dates (`date + interval '3 month'`) are computed on the
client and bound as a second parameter. Q19's join and common conditions are factored out of its
OR branches, as PostgreSQL's planner does itself; Q12 is written with OR and FILTER (see Q12_SPEC
for why). Most TPC-H queries read a large share of lineitem
and no index can help them; they are kept on purpose, to see that an advisor leaves them alone.
Five parametrised lookups derived from Q17, Q20, Q13, Q9/Q20 and Q3/Q10 (the correlated
subqueries and customer drill-downs those queries contain) are the statements indexes can fix.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from .workloads import HERE, Progress, Statement, Workload, run_sql_file, table_counts

TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]
SEGMENTS = ["AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY"]
REGIONS = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
SHIPMODES = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]


def tpchgen_binary() -> str:
    """The tpchgen-cli executable: beside this interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "tpchgen-cli"
    if beside.exists():
        return str(beside)
    found = shutil.which("tpchgen-cli")
    if not found:
        raise SystemExit("tpchgen-cli not found: install it for the benchmark with "
                         "`.venv/bin/pip install tpchgen-cli` (a Rust binary shipped in the wheel)")
    return found


def _load(conn: psycopg.Connection, args: argparse.Namespace, progress: Progress) -> dict[str, int]:
    run_sql_file(conn, HERE / "tpch_schema.sql", progress)
    with tempfile.TemporaryDirectory(prefix="dbarch_tpch_") as tmp:
        t = time.perf_counter()
        subprocess.run([tpchgen_binary(), "csv", "-s", str(args.sf), "-o", tmp], check=True,
                       capture_output=True)
        progress(f"  tpchgen-cli csv -s {args.sf}: {time.perf_counter() - t:.1f}s")
        for table in TABLES:
            t = time.perf_counter()
            copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(sql.Identifier(table))
            with conn.cursor() as cur, cur.copy(copy) as sink, open(Path(tmp) / f"{table}.csv", "rb") as src:
                while block := src.read(1 << 20):
                    sink.write(block)
            if time.perf_counter() - t > 1:
                progress(f"  COPY {table} ({time.perf_counter() - t:.1f}s)")
    return table_counts(conn, TABLES)


def _samples(conn: psycopg.Connection, rng: random.Random) -> dict:
    def column(query: str) -> list:
        return [r[0] if len(r) == 1 else tuple(r) for r in conn.execute(query)]

    return {
        "parts": conn.execute("SELECT max(p_partkey) FROM part").fetchone()[0],
        "part_supp": column("SELECT l_partkey, l_suppkey FROM lineitem TABLESAMPLE SYSTEM (1) REPEATABLE (3) "
                            "LIMIT 300"),
        "customers": column("SELECT o_custkey FROM orders TABLESAMPLE SYSTEM (2) REPEATABLE (5) LIMIT 300"),
        "colors": sorted(column("SELECT DISTINCT split_part(p_name, ' ', 1) FROM part")),
    }


def _month(year: int, month: int, plus: int = 0) -> date:
    n = year * 12 + (month - 1) + plus
    return date(n // 12, n % 12 + 1, 1)


def _random_month(rng: random.Random, first: tuple[int, int], last: tuple[int, int]) -> date:
    lo, hi = first[0] * 12 + first[1] - 1, last[0] * 12 + last[1] - 1
    n = rng.randint(lo, hi)
    return date(n // 12, n % 12 + 1, 1)


def _brand(rng: random.Random) -> str:
    return f"Brand#{rng.randint(1, 5)}{rng.randint(1, 5)}"


def _q1(s, rng):
    return (date.fromordinal(date(1998, 12, 1).toordinal() - rng.randint(60, 120)),)


def _q3(s, rng):
    day = date(1995, 3, rng.randint(1, 31))
    return (rng.choice(SEGMENTS), day, day)


def _q4(s, rng):
    start = _random_month(rng, (1993, 1), (1997, 10))
    return (start, _month(start.year, start.month, 3))


def _q5(s, rng):
    year = rng.randint(1993, 1997)
    return (rng.choice(REGIONS), date(year, 1, 1), date(year + 1, 1, 1))


def _q6(s, rng):
    year = rng.randint(1993, 1997)
    discount = Decimal(rng.randint(2, 9)) / 100
    return (date(year, 1, 1), date(year + 1, 1, 1), discount - Decimal("0.01"), discount + Decimal("0.01"),
            rng.randint(24, 25))


def _q10(s, rng):
    start = _random_month(rng, (1993, 2), (1995, 1))
    return (start, _month(start.year, start.month, 3), "R")


def _q12(s, rng):
    year = rng.randint(1993, 1997)
    first, second = rng.sample(SHIPMODES, 2)
    return (first, second, date(year, 1, 1), date(year + 1, 1, 1))


def _q14(s, rng):
    start = _random_month(rng, (1993, 1), (1997, 12))
    return (start, _month(start.year, start.month, 1))


def _q19(s, rng):
    q1, q2, q3 = rng.randint(1, 10), rng.randint(10, 20), rng.randint(20, 30)
    return (_brand(rng), q1, q1 + 10, _brand(rng), q2, q2 + 10, _brand(rng), q3, q3 + 10)


def _part_supplier_shipped(s, rng):
    part, supp = rng.choice(s["part_supp"])
    year = rng.randint(1993, 1997)
    return (part, supp, date(year, 1, 1), date(year + 1, 1, 1))


STATEMENTS = [
    Statement("q1_pricing_summary",
              "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price, "
              "sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price, "
              "sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, avg(l_quantity) AS avg_qty, "
              "avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc, count(*) AS count_order "
              "FROM lineitem WHERE l_shipdate <= %s GROUP BY l_returnflag, l_linestatus "
              "ORDER BY l_returnflag, l_linestatus", 5,
              "scan of ~98% of lineitem: no index helps", _q1, replay_sets=2),
    Statement("q3_shipping_priority",
              "SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority "
              "FROM customer, orders, lineitem WHERE c_mktsegment = %s AND c_custkey = o_custkey "
              "AND l_orderkey = o_orderkey AND o_orderdate < %s AND l_shipdate > %s "
              "GROUP BY l_orderkey, o_orderdate, o_shippriority ORDER BY revenue DESC, o_orderdate LIMIT 10", 5,
              "half of orders and lineitem qualify: scans", _q3, replay_sets=2),
    Statement("q4_order_priority",
              "SELECT o_orderpriority, count(*) AS order_count FROM orders WHERE o_orderdate >= %s "
              "AND o_orderdate < %s AND EXISTS (SELECT * FROM lineitem WHERE l_orderkey = o_orderkey "
              "AND l_commitdate < l_receiptdate) GROUP BY o_orderpriority ORDER BY o_orderpriority", 5,
              "3 months of orders (~4%): orders (o_orderdate) may help a little", _q4, replay_sets=2),
    Statement("q5_local_supplier_volume",
              "SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue "
              "FROM customer, orders, lineitem, supplier, nation, region "
              "WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey "
              "AND c_nationkey = s_nationkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey "
              "AND r_name = %s AND o_orderdate >= %s AND o_orderdate < %s GROUP BY n_name ORDER BY revenue DESC", 5,
              "one year of orders (~15%) joined to lineitem: scans", _q5, replay_sets=2),
    Statement("q6_forecast_revenue",
              "SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem WHERE l_shipdate >= %s "
              "AND l_shipdate < %s AND l_discount BETWEEN %s AND %s AND l_quantity < %s", 5,
              "one year of lineitem (~15%): scan", _q6, replay_sets=2),
    Statement("q10_returned_items",
              "SELECT c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, c_acctbal, n_name, "
              "c_address, c_phone, c_comment FROM customer, orders, lineitem, nation WHERE c_custkey = o_custkey "
              "AND l_orderkey = o_orderkey AND o_orderdate >= %s AND o_orderdate < %s AND l_returnflag = %s "
              "AND c_nationkey = n_nationkey GROUP BY c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, "
              "c_comment ORDER BY revenue DESC LIMIT 20", 5,
              "3 months of orders, then lineitem by its primary key: orders (o_orderdate) may help", _q10,
              replay_sets=2),
    # Q12 adapted: `(l_shipmode = $1 OR l_shipmode = $2)` for the specification's `l_shipmode IN ($1, $2)`
    # and count(*) FILTER (...) for sum(CASE ... THEN 1 ELSE 0 END): the same result, but the
    # specification's text fails dbarch's audit twice over (see Q12_SPEC); --tpch-q12-spec runs it
    Statement("q12_shipping_modes",
              "SELECT l_shipmode, count(*) FILTER (WHERE o_orderpriority IN ('1-URGENT', '2-HIGH')) "
              "AS high_line_count, count(*) FILTER (WHERE o_orderpriority NOT IN ('1-URGENT', '2-HIGH')) "
              "AS low_line_count FROM orders, lineitem "
              "WHERE o_orderkey = l_orderkey AND (l_shipmode = %s OR l_shipmode = %s) "
              "AND l_commitdate < l_receiptdate AND l_shipdate < l_commitdate AND l_receiptdate >= %s "
              "AND l_receiptdate < %s GROUP BY l_shipmode ORDER BY l_shipmode", 5,
              "two ship modes over a year (~4% of lineitem, spread over every page): scan", _q12, replay_sets=2),
    Statement("q14_promotion_effect",
              "SELECT 100.00 * sum(CASE WHEN p_type LIKE 'PROMO%%' THEN l_extendedprice * (1 - l_discount) "
              "ELSE 0 END) / sum(l_extendedprice * (1 - l_discount)) AS promo_revenue FROM lineitem, part "
              "WHERE l_partkey = p_partkey AND l_shipdate >= %s AND l_shipdate < %s", 5,
              "one month of lineitem (~1.3%, spread over many pages): lineitem (l_shipdate) may help",
              _q14, replay_sets=2),
    Statement("q19_discounted_revenue",
              "SELECT sum(l_extendedprice * (1 - l_discount)) AS revenue FROM lineitem, part "
              "WHERE p_partkey = l_partkey AND l_shipmode IN ('AIR', 'AIR REG') "
              "AND l_shipinstruct = 'DELIVER IN PERSON' AND ("
              "(p_brand = %s AND p_container IN ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG') "
              "AND l_quantity >= %s AND l_quantity <= %s AND p_size BETWEEN 1 AND 5) "
              "OR (p_brand = %s AND p_container IN ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK') "
              "AND l_quantity >= %s AND l_quantity <= %s AND p_size BETWEEN 1 AND 10) "
              "OR (p_brand = %s AND p_container IN ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG') "
              "AND l_quantity >= %s AND l_quantity <= %s AND p_size BETWEEN 1 AND 15))", 5,
              "few parts qualify: lineitem (l_partkey) lets a nested loop start from part", _q19, replay_sets=2),
    # parametrised lookups derived from the queries' subqueries and drill-downs
    Statement("q17_part_avg_quantity",
              "SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey = %s", 30,
              "Q17's correlated subquery: missing lineitem (l_partkey)",
              lambda s, rng: (rng.randint(1, s["parts"]),)),
    Statement("q20_part_supplier_shipped",
              "SELECT sum(l_quantity) FROM lineitem WHERE l_partkey = %s AND l_suppkey = %s "
              "AND l_shipdate >= %s AND l_shipdate < %s", 30,
              "Q20's correlated subquery: missing lineitem (l_partkey, l_suppkey, l_shipdate)",
              _part_supplier_shipped),
    Statement("customer_recent_orders",
              "SELECT o_orderkey, o_orderdate, o_totalprice, o_orderstatus FROM orders WHERE o_custkey = %s "
              "ORDER BY o_orderdate DESC LIMIT %s", 30,
              "a customer's orders (Q13/Q22 drill-down): missing orders (o_custkey, o_orderdate)",
              lambda s, rng: (rng.choice(s["customers"]), 10)),
    Statement("parts_by_name_prefix",
              "SELECT p_partkey, p_name, p_retailprice FROM part WHERE p_name LIKE %s", 30,
              "Q9/Q20's p_name LIKE 'color%': missing part (p_name) (C collation: plain btree)",
              lambda s, rng: (rng.choice(s["colors"]) + " %",)),
    Statement("customer_order_lines",
              "SELECT o.o_orderkey, o.o_orderdate, l.l_partkey, l.l_quantity, l.l_extendedprice "
              "FROM orders o JOIN lineitem l ON l.l_orderkey = o.o_orderkey WHERE o.o_custkey = %s", 30,
              "Q3/Q10 for one customer: missing orders (o_custkey); lineitem by its primary key",
              lambda s, rng: (rng.choice(s["customers"]),)),
]

# The specification's Q12. pg_stat_statements turns `THEN 1 ELSE 0` into `THEN $5 ELSE $6`, whose
# type PostgreSQL cannot infer, so dbarch's EXPLAIN (GENERIC_PLAN) fails with "function sum(text)
# does not exist" and the whole benchmarked_gains step fails; and `l_shipmode IN (...) ... GROUP BY
# l_shipmode` makes candidates_for emit the index (l_shipmode) twice, which fails storing the
# candidates (UniqueViolation on index_candidate_pkey).
Q12_SPEC = Statement(
    "q12_shipping_modes",
    "SELECT l_shipmode, sum(CASE WHEN o_orderpriority = '1-URGENT' OR o_orderpriority = '2-HIGH' "
    "THEN 1 ELSE 0 END) AS high_line_count, sum(CASE WHEN o_orderpriority <> '1-URGENT' "
    "AND o_orderpriority <> '2-HIGH' THEN 1 ELSE 0 END) AS low_line_count FROM orders, lineitem "
    "WHERE o_orderkey = l_orderkey AND l_shipmode IN (%s, %s) AND l_commitdate < l_receiptdate "
    "AND l_shipdate < l_commitdate AND l_receiptdate >= %s AND l_receiptdate < %s "
    "GROUP BY l_shipmode ORDER BY l_shipmode", 5,
    "two ship modes over a year (~4% of lineitem, spread over every page): scan", _q12, replay_sets=2)

TPCH = Workload(
    name="tpch", title="tpch: TPC-H (tpchgen-cli), scale factor from --sf",
    statements=STATEMENTS, load=_load, samples=_samples, hand_sql=HERE / "hand_tpch.sql",
    # analytic statements take 100+ ms each: fewer timed runs keep the audit within minutes
    audit_settings={"runs": 3, "param_sets": 2},
)
