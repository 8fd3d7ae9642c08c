"""Write upkeep comes from the same window as the reads: the write statements pg_stat_statements saw
(calls and rows per table, one-off loads apart) or table-counter differences within the window, never
counters since the statistics reset. A bulk-loaded, never-written table is not write-heavy."""

from __future__ import annotations

import doctest
import random

import psycopg

from dbarch_pipeline.bench import writes
from dbarch_pipeline.db import database_name
from dbarch_pipeline.bench.writes import window_writes, write_target
from dbarch_pipeline.memory import store
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database

RESET_STATEMENTS = ("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()), 0)")


def test_doctests():
    assert doctest.testmod(writes).failed == 0


def test_targets_of_generated_write_statements():
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    for _ in range(200):
        schema = rng.choice([None, "public", "shop", '"Mixed Case"'])
        table = rng.choice(["orders", "t1", '"Line Items"', "accounts"])
        name = f"{schema}.{table}" if schema else table
        lead = rng.choice(["", "/* app */ ", "  "])
        kind = rng.choice(["INSERT INTO {} (a) VALUES ($1)", "UPDATE {} SET a = $1 WHERE id = $2",
                           "DELETE FROM {} WHERE id = $1", "insert into only {} select * from x",
                           "WITH d AS (SELECT $1 AS v) INSERT INTO {} (a) SELECT v FROM d",
                           "MERGE INTO {} t USING s ON t.id = s.id WHEN MATCHED THEN DELETE"])
        got = write_target(lead + kind.format(name))
        want_table = table.strip('"') if table.startswith('"') else table
        want_schema = (schema.strip('"') if schema.startswith('"') else schema) if schema else None
        assert got == (want_schema, want_table), (seed, kind, name, got)
        assert write_target(lead + f"SELECT * FROM {name} WHERE a = $1") is None, seed


def test_one_off_loads_are_not_a_rate_and_counters_need_a_window():
    stmts = {1: {"query_text": "COPY-like load", "calls": 1, "rows": 9},
             2: {"query_text": "INSERT INTO t SELECT generate_series(1, $1)", "calls": 1, "rows": 2_000_000},
             3: {"query_text": "UPDATE t SET a = a + $1 WHERE id = $2", "calls": 500, "rows": 500}}
    counters = {"public.t": {"rows": 2_100_500}, "public.u": {"rows": 70_000}}
    # no capture before the window: the counters may hold the load, so only the statements count
    w = window_writes(stmts, counters, seconds=60, min_calls=5, known_tables=counters, counters_in_window=False)
    assert w["public.t"]["rows"] == 500 and w["public.t"]["one_off_rows"] == 2_000_000
    assert "public.u" not in w
    # differences within the window: writes no statement explains (COPY) count, the load does not
    w = window_writes(stmts, counters, seconds=60, min_calls=5, known_tables=counters, counters_in_window=True)
    assert w["public.t"]["rows"] == 100_500 and w["public.u"]["rows"] == 70_000
    assert w["public.u"]["source"] == "table counters within the window"


def test_bulk_loaded_table_is_not_write_heavy(server, store_dsn):
    url = fresh_database("dbarch_test_bulk")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "sensor int NOT NULL, payload text NOT NULL)")
        # only pg_stat_statements is reset: the table counters keep the load, as after a restore
        conn.execute(RESET_STATEMENTS)
        conn.execute("INSERT INTO readings (sensor, payload) SELECT g % 4000, repeat('x', 60) "
                     "FROM generate_series(1, 60000) g")
        conn.execute("VACUUM ANALYZE readings")
        for sensor in range(8):
            conn.execute("SELECT count(*), max(payload) FROM readings WHERE sensor = %s", (sensor,))
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = materialize_audit(audit_resources(target_dsn=url, store_dsn=store_dsn,
                                               settings={**FAST_SETTINGS, "min_mean_ms": 0.2}))
    meta = result.asset_materializations_for_node("optimization_log")[0].metadata["summary"].value
    with psycopg.connect(store_dsn) as conn:
        snap = store.latest_snapshot(conn, database_name(url))
    written = snap["table_writes"]["public.readings"]
    assert written["rows"] == 0 and written["one_off_rows"] == 60_000, written
    assert meta["indexes_recommended"] == 1, meta


def test_upkeep_follows_hot_updates_on_generated_tables():
    """An index pays for an UPDATE's rows only in the share that was not HOT, unless it covers a
    column the UPDATE sets: then it pays for the HOT share too, in itself and every existing index."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    cols = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        stmts = [{"queryid": n, "rows": rng.randrange(0, 5000), "recurring": rng.random() < 0.8,
                  "set_columns": rng.sample(cols, rng.randrange(1, 3))} for n in range(rng.randrange(0, 4))]
        inserts = rng.randrange(0, 5000)
        w = {"rows": inserts + sum(s["rows"] for s in stmts), "hot_share": rng.choice([None, 0.0, rng.random(), 1.0]),
             "indexes": rng.randrange(0, 6), "source": "pg_stat_statements", "statements": stmts}
        index = frozenset(rng.sample(cols, rng.randrange(1, 4)))
        rows, notes = writes.upkeep_rows(w, index)
        assert writes.upkeep_rows(w, None)[0] == w["rows"], seed
        h = w["hot_share"] or 0.0
        want = float(w["rows"])
        for s in stmts:
            if s["recurring"] and h:
                want += s["rows"] * h * (1 + w["indexes"]) if index & set(s["set_columns"]) else -s["rows"] * h
        assert abs(rows - max(0.0, want)) < 1e-6, (seed, w, index, rows, want)
        assert rows >= inserts - 1e-6, seed          # inserts always write every index
        breaking = [s for s in stmts if s["recurring"] and h and index & set(s["set_columns"])]
        assert len(notes) == len(breaking), seed
        if not breaking:
            assert rows <= w["rows"] + 1e-6, seed    # without breaking HOT, never more than every row


def test_hot_updates_seen_by_postgresql_shape_upkeep(server, store_dsn):
    """PostgreSQL's own counters: updates of an unindexed column are HOT, so an index elsewhere is not
    charged for them; an index on the updated column is charged for them and breaks HOT for the rest."""
    url = fresh_database("dbarch_test_hot")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, sku int NOT NULL, price int NOT NULL, "
                     "note text NOT NULL) WITH (fillfactor = 60)")
        conn.execute("INSERT INTO items SELECT g, g % 5000, g % 1000, repeat('n', 40) FROM generate_series(1, 60000) g")
        conn.execute("VACUUM ANALYZE items")
        conn.execute(RESET_STATEMENTS)
        for n in range(600):
            conn.execute("UPDATE items SET price = price + %s WHERE id = %s", (1, 1 + (n * 97) % 60000))
        for n in range(6):
            conn.execute("SELECT id, note FROM items WHERE sku = %s", (n * 7,))
            conn.execute("SELECT id, note FROM items WHERE price BETWEEN %s AND %s", (n * 100, n * 100 + 1))
        conn.execute("SELECT pg_stat_force_next_flush()")
        hot, upd = conn.execute("SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables "
                                "WHERE relname = 'items'").fetchone()
    assert upd == 600 and hot >= 500, (hot, upd)   # fillfactor 60: room on every page for HOT
    materialize_audit(audit_resources(target_dsn=url, store_dsn=store_dsn,
                                      settings={**FAST_SETTINGS, "min_mean_ms": 0.2}))
    with psycopg.connect(store_dsn) as conn:
        snap = store.latest_snapshot(conn, database_name(url))
        rows = conn.execute("SELECT evidence FROM dbarch.optimization_log WHERE target = %s "
                            "AND status <> 'superseded'", (snap["target"],)).fetchall()
    written = snap["table_writes"]["public.items"]
    assert written["indexes"] == 1 and written["hot_share"] >= 0.8, written
    # (psycopg binds small and larger ints as different types: one statement may hold two queryids)
    assert {tuple(s.get("set_columns") or ()) for s in written["statements"]} == {("price",)}, written
    by_key = {tuple(ev["spec"]["columns"]): ev for (ev,) in rows if (ev.get("spec") or {}).get("columns")}
    sku, price = by_key.get(("sku",)), by_key.get(("price",))
    assert sku and price, sorted(by_key)
    per_row = {k: ev["write_cost_ms_per_s"] / ev["write_ms_per_row"] for k, ev in (("sku", sku), ("price", price))
               if ev.get("write_ms_per_row")}
    if len(per_row) == 2:
        # rows per second each is charged for: the HOT share spared, the HOT share broken twice over
        assert per_row["price"] > 5 * per_row["sku"], per_row
    assert not sku.get("write_notes") and "price" in " ".join(price.get("write_notes") or []), (sku, price)
