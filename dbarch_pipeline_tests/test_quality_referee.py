"""The quality suite's referee for "harmful" (benchmarks/quality/run_quality.referee): a statement that
looks harmed after the no-index block and the configuration's block is decided by an interleaved A/B
(with, without, with, without, ... the indexes it is exposed to, dropped and re-created between the
arms), on the real embedded server. It must confirm a real slowdown (writes into a table given many
indexes, a read the planner misleads into an index) and clear a statement whose first block was slow
for another reason. Seeds are printed."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.quality import measure
from benchmarks.quality.run_quality import HARMFUL, NOISE_MS, ConfigResult, _recheck, referee
from benchmarks.quality.workloads import Statement, Workload, bind_ints_as_bigint

from .conftest import fresh_database

SEED = random.randrange(1, 100_000)
COLUMNS = ["a", "b", "c", "d", "e", "f", "g", "h", "k", "m"]


def _table(conn: psycopg.Connection, rows: int) -> None:
    """A table of ten int/text columns with a primary key only; half-full pages (fillfactor 50) so
    that an UPDATE of an unindexed column stays on its page (a HOT update touches no index)."""
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, a int, b int, c int, d int, e int, f text, "
                 "g text, h int, k int, m text, note text) WITH (fillfactor = 50)")
    conn.execute("INSERT INTO items (a, b, c, d, e, f, g, h, k, m, note) "
                 "SELECT (random() * 1000)::int, (random() * 50)::int, g %% 997, (random() * 1e6)::int, g %% 13, "
                 "md5(g::text), 'x' || (g %% 500), (random() * 10)::int, g, md5((g * 7)::text), 'n' "
                 "FROM generate_series(1, %s) g", (rows,))
    conn.execute("VACUUM ANALYZE items")


def _workload(*statements: Statement) -> Workload:
    return Workload("referee", "referee test", list(statements), load=lambda *_: {}, samples=lambda *_: {},
                    hand_sql=Path("/dev/null"))


def _ddls(columns: list[str]) -> list[sql.Composable]:
    return [sql.SQL("CREATE INDEX {} ON items ({})").format(sql.Identifier(f"items_{c}_ref"), sql.Identifier(c))
            for c in columns]


def test_a_real_slowdown_is_confirmed_by_the_interleaved_comparison(server):
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    url = fresh_database("dbarch_test_referee")
    extra = rng.sample(COLUMNS, rng.randint(8, 10))
    batch = rng.randint(40, 80)
    insert = Statement(
        "insert_batch",
        "INSERT INTO items (a, b, c, d, e, f, g, h, k, m, note) SELECT (random() * 1000)::int, "
        "(random() * 50)::int, g %% 997, (random() * 1e6)::int, g %% 13, md5(g::text), 'x' || g, 1, g, "
        "md5((g + 1)::text), 'n' FROM generate_series(1, %s) g", 10, "write", lambda _s, _r: (batch,))
    wl = _workload(insert)
    params = {insert.name: [(batch,)] * 3}
    with psycopg.connect(url, autocommit=True) as conn:
        _table(conn, rng.randint(15_000, 30_000))
    with measure.measurement_connection(url) as conn:
        bind_ints_as_bigint(conn)
        base = ConfigResult("no index", None, measure.replay(conn, wl.statements, params, 3))
        applied = measure.apply(conn, _ddls(extra))
        result = ConfigResult("many indexes", applied, measure.replay(conn, wl.statements, params, 3))
        _recheck(conn, wl, params, 3, base, result)
        referee(conn, wl, params, 3, base, result)
        print(f"{len(extra)} indexes, batch {batch}: no index {base.timings[insert.name].ms:.3f} ms, "
              f"with {result.timings[insert.name].ms:.3f} ms")
        ab = result.ab[insert.name]
        print(ab.line(HARMFUL, NOISE_MS))
        assert sorted(ab.indexes) == sorted(ix.name for ix in applied.added)
        assert len(ab.rounds) >= 3 and all(w > wo for w, wo in ab.rounds)
        assert ab.ratio >= HARMFUL and ab.diff_ms >= NOISE_MS
        assert result.harmful() == [insert.name]
        assert ab.as_json(HARMFUL, NOISE_MS)["verdict"] == "harmful"
        # the configuration is as it was: every toggled index exists again
        assert {ix.name for ix in applied.added} <= {ix.name for ix in measure.indexes(conn).values()}
        measure.drop(conn, applied)


def test_a_read_the_planner_misleads_into_an_index_is_confirmed_harmful(server):
    """A read an index really slows down: `flag = $1 ORDER BY ts LIMIT 5` where the rare flag sits at
    the end of ts. With an index on ts the planner walks it expecting a match every ~100 rows (it
    assumes the flag is spread evenly) and reads nearly all of it; without, a scan and a top-N sort."""
    rng = random.Random(SEED + 2)
    print(f"seed {SEED + 2}")
    url = fresh_database("dbarch_test_referee")
    rows, rare = rng.randint(40_000, 60_000), rng.randint(300, 600)
    read = Statement("rare_flag_latest", "SELECT id, ts FROM events WHERE flag = %s ORDER BY ts LIMIT 5", 10,
                     "read", lambda _s, _r: (1,))
    wl = _workload(read)
    params = {read.name: [(1,)] * 2}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, flag int, ts timestamptz, pad text)")
        conn.execute("INSERT INTO events (flag, ts, pad) SELECT (g > %s)::int, now() - (%s - g) * interval '1 minute', "
                     "md5(g::text) FROM generate_series(1, %s) g", (rows - rare, rows, rows))
        conn.execute("VACUUM ANALYZE events")
    with measure.measurement_connection(url) as conn:
        bind_ints_as_bigint(conn)
        base = ConfigResult("no index", None, measure.replay(conn, wl.statements, params, 3))
        applied = measure.apply(conn, [sql.SQL("CREATE INDEX events_ts_ref ON events (ts)")])
        result = ConfigResult("ts index", applied, measure.replay(conn, wl.statements, params, 3))
        assert result.timings[read.name].indexes_used == {"events_ts_ref"}
        _recheck(conn, wl, params, 3, base, result)
        referee(conn, wl, params, 3, base, result)
        ab = result.ab[read.name]
        print(f"{rows} rows, {rare} flagged: no index {base.timings[read.name].ms:.2f} ms, "
              f"with {result.timings[read.name].ms:.2f} ms; {ab.line(HARMFUL, NOISE_MS)}")
        assert ab.indexes == ["events_ts_ref"] and ab.ratio >= HARMFUL and ab.diff_ms >= NOISE_MS
        assert result.harmful() == [read.name]
        measure.drop(conn, applied)


def test_a_noisy_first_block_is_cleared_when_the_indexes_do_not_slow_the_statement(server):
    """The first block is simulated (the timings seed 79408 showed: a sub-millisecond write timed 1.6x
    slower right after the configuration's index builds, also on the recheck); the A/B is real."""
    rng = random.Random(SEED + 1)
    print(f"seed {SEED + 1}")
    url = fresh_database("dbarch_test_referee")
    update = Statement("update_note", "UPDATE items SET note = %s WHERE id = %s", 10, "write",
                       lambda _s, r: (f"n{r.randint(1, 99)}", r.randint(1, 5_000)))
    read = Statement("read_by_c", "SELECT id, note FROM items WHERE c = %s", 10, "read",
                     lambda _s, r: (r.randint(0, 996),))
    wl = _workload(update, read)
    params = {st.name: [st.args({}, rng) for _ in range(3)] for st in wl.statements}
    with psycopg.connect(url, autocommit=True) as conn:
        _table(conn, 10_000)
    with measure.measurement_connection(url) as conn:
        bind_ints_as_bigint(conn)
        base = ConfigResult("no index", None, measure.replay(conn, wl.statements, params, 3))
        applied = measure.apply(conn, _ddls(["c"]))
        timings = measure.replay(conn, wl.statements, params, 3)
        assert "items_c_ref" in timings[read.name].indexes_used
        # the simulated noisy block: the write looks 1.6x and 0.1 ms slower, and the recheck agreed
        b = base.timings[update.name]
        timings[update.name] = measure.Timing(1.6 * b.ms + 0.1, [1.6 * m + 0.1 for m in b.set_medians])
        result = ConfigResult("one index", applied, timings, rechecked=[update.name])
        referee(conn, wl, params, 3, base, result, also=frozenset({read.name}))
        ab = result.ab[update.name]
        print(f"screen: {b.ms:.3f} -> {timings[update.name].ms:.3f} ms; {ab.line(HARMFUL, NOISE_MS)}")
        assert ab.indexes == ["items_c_ref"]
        assert not ab.harmed(HARMFUL, NOISE_MS) and result.harmful() == []
        assert ab.as_json(HARMFUL, NOISE_MS)["verdict"] == "cleared"
        # a read the index makes faster, compared on demand (--ab): kept, much faster, never scored
        faster = result.ab[read.name]
        print(faster.line(HARMFUL, NOISE_MS))
        assert read.name not in result.flagged and faster.ratio < 1 / HARMFUL
        measure.drop(conn, applied)


def test_the_verdict_is_the_median_round_against_both_bars():
    def ab(rounds):
        return measure.ABResult("s", ["ix"], rounds, 30, 0.0)

    # one noisy round does not decide: two rounds of three say no harm
    noisy = ab([(0.30, 0.17), (0.18, 0.17), (0.17, 0.17)])
    assert noisy.ratio < HARMFUL and not noisy.harmed(HARMFUL, NOISE_MS)
    # a real 1.5x slowdown of a 1 ms statement in every round
    real = ab([(1.5, 1.0), (1.6, 1.05), (1.45, 0.98)])
    assert real.harmed(HARMFUL, NOISE_MS) and abs(real.ratio - 1.5) < 0.01
    # 1.3x but 0.03 ms: under the noise floor of a client-timed call
    tiny = ab([(0.13, 0.10), (0.13, 0.10), (0.13, 0.10)])
    assert tiny.ratio >= HARMFUL and not tiny.harmed(HARMFUL, NOISE_MS)
