"""Workload-wide selection: one index serving several statements beats several, the storage budget
and index count are respected, a regression counts against an index, and on a write-heavy table a
marginal index is declined (measured end to end on the embedded PostgreSQL)."""

from __future__ import annotations

import random

import psycopg

from dbarch_pipeline import demo
from dbarch_pipeline.advisor.selection import select_indexes
from dbarch_pipeline.audit import AuditSettings
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database


def bench(qid: int, ddl: str, before: float, after: float, *, size: int = 1000, write_ms: float = 0.0,
          regression: bool = False, table: str = "t", ci: tuple[float, float] | None = None) -> dict:
    """A benchmark row; ci: the bootstrap's 95% interval of the time ratio (after / before)."""
    return {"queryid": qid, "ddl": ddl, "status": "measured", "ms_before": before, "ms_after": after,
            "measured_gain_pct": 100 * (before - after) / before, "estimated_gain_pct": 50.0,
            "confidence": 0.9, "cost_after": 1.0,
            "evidence": {"index_used": True, "index_bytes": size, "write_ms_per_row": write_ms,
                         "regression": regression, "spec": {"schema": "public", "table": table},
                         "confidence_parts": {"ratio_ci": list(ci)} if ci else {}}}


def test_one_index_serving_two_statements_beats_two_narrow_ones():
    rows = [bench(1, "AB", 10, 1.2), bench(2, "AB", 10, 1.3),
            bench(1, "A", 10, 1.0), bench(2, "B", 10, 1.0)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10)
    assert [c.ddl for c in sel.chosen] == ["AB"]
    assert {q: r["ddl"] for q, r in sel.assignment.items()} == {1: "AB", 2: "AB"}
    assert "already serves" in sel.declined["A"]


def test_storage_budget_and_index_count():
    rows = [bench(1, "big", 10, 1, size=10_000), bench(2, "small", 10, 2, size=100)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10, storage_budget_bytes=5_000)
    assert [c.ddl for c in sel.chosen] == ["small"] and "storage budget" in sel.declined["big"]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10, max_indexes=1)
    assert [c.ddl for c in sel.chosen] == ["big"]


def test_an_index_made_redundant_by_a_later_pick_is_dropped():
    """The greedy pass may pick (a) first, as a tie within noise of (a, b), then (a, b) for another
    statement; the final pass drops (a) since (a, b) serves its statement as well: the same set
    whichever order the noise gave."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    for _ in range(20):
        j = rng.uniform(-0.1, 0.1)
        rows = [bench(1, "A", 10, 2.0 + j, size=1000, ci=(0.1, 0.3)),
                bench(1, "AB", 10, 1.9 - j, size=3000, ci=(0.1, 0.3)),
                bench(2, "AB", 10, 8.8, size=3000, ci=(0.8, 0.95))]
        rng.shuffle(rows)
        sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10)
        assert [c.ddl for c in sel.chosen] == ["AB"], seed
        assert {q: r["ddl"] for q, r in sel.assignment.items()} == {1: "AB", 2: "AB"}, seed


def test_no_count_cap_by_default_and_the_upkeep_stops_the_pass():
    """Twelve tables, each with a proven index: all twelve are chosen (no count cap); an index
    whose saving's low end does not clear its upkeep is not."""
    rows = [bench(q, f"I{q:02d}", 10, 2, table=f"t{q}", write_ms=0.001, ci=(0.15, 0.25)) for q in range(1, 13)]
    rows.append(bench(13, "costly", 10, 6, table="busy", write_ms=0.001, ci=(0.3, 0.9)))
    writes = {f"public.t{q}": {"rows": 100, "seconds": 1.0} for q in range(1, 13)}
    writes["public.busy"] = {"rows": 2_000, "seconds": 1.0}   # 2 ms/s: under the 4 ms/s saved, over its low end
    sel = select_indexes(rows, {q: 1.0 for q in range(1, 14)}, table_writes=writes, min_gain_pct=10)
    assert sorted(c.ddl for c in sel.chosen) == [f"I{q:02d}" for q in range(1, 13)]
    assert sel.next_in_line == [] and "does not surely clear its write upkeep" in sel.declined["costly"]
    assert AuditSettings().max_indexes == 0


def test_a_regression_counts_against_the_index():
    rows = [bench(1, "X", 10, 8), bench(2, "X", 10, 30, regression=True)]
    sel = select_indexes(rows, {1: 1.0, 2: 1.0}, table_writes={}, min_gain_pct=10)
    assert sel.chosen == [] and sel.declined["X"] == "makes another statement slower"


def test_upkeep_weighed_against_reads():
    rows = [bench(1, "X", 10, 5, write_ms=0.01)]
    writes = {"public.t": {"rows": 10_000, "seconds": 1.0}}   # 100 ms/s of upkeep
    sel = select_indexes(rows, {1: 1.0}, table_writes=writes, min_gain_pct=10)   # 5 ms/s of reads
    assert sel.chosen == [] and "outweighs the read benefit" in sel.declined["X"]
    sel = select_indexes(rows, {1: 100.0}, table_writes=writes, min_gain_pct=10)  # 500 ms/s of reads
    assert [c.ddl for c in sel.chosen] == ["X"]


def _audit(url: str, store: str) -> dict:
    result = materialize_audit(audit_resources(target_dsn=url, store_dsn=store,
                                               settings={**FAST_SETTINGS, "min_mean_ms": 0.2}))
    return result.asset_materializations_for_node("optimization_log")[0].metadata["summary"].value


def _events_db(name: str) -> str:
    url = fresh_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "device int NOT NULL, payload text NOT NULL)")
        conn.execute("INSERT INTO events (device, payload) SELECT g % 5000, repeat('x', 40) "
                     "FROM generate_series(1, 40000) g")
        conn.execute("VACUUM ANALYZE events")
        demo.reset_statistics(conn)
    return url


def test_write_heavy_table_declines_a_marginal_index(server, store_dsn):
    quiet = _events_db("dbarch_test_reads")
    busy = _events_db("dbarch_test_writes")
    for url in (quiet, busy):
        with psycopg.connect(url, autocommit=True) as conn:
            for device in range(5):
                conn.execute("SELECT count(*) FROM events WHERE device = %s", (device,))
    with psycopg.connect(busy, autocommit=True) as conn:
        # a firehose of writes on the same table: 300,000 rows in a few seconds
        for _ in range(6):
            conn.execute("INSERT INTO events (device, payload) SELECT g % 5000, 'y' FROM generate_series(1, 50000) g")
            conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id DESC LIMIT 50000)")
        conn.execute("VACUUM ANALYZE events")
        conn.execute("SELECT pg_stat_force_next_flush()")
    assert _audit(quiet, store_dsn)["indexes_recommended"] == 1
    busy_meta = _audit(busy, store_dsn)
    assert busy_meta["indexes_recommended"] == 0 and busy_meta["declined"] >= 1


def test_guessed_parameter_sets_do_not_hide_what_the_observed_ones_measured():
    """`payload ? $1`: the application's keys (observed, calibrated) gain 25x; guessed keys that match
    most rows gain nothing. The selection and the confidence go by the observed set, on every draw."""
    from datetime import datetime, timezone

    from dbarch_pipeline.audit import confidence_basis, select_for_snapshot
    from dbarch_pipeline.models import SlowQuery

    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    q = SlowQuery(queryid=1, query_text="SELECT id FROM t WHERE payload ? $1", fingerprint="f", calls=60,
                  total_exec_ms=6000.0, mean_exec_ms=100.0, rows=60, shared_blks_hit=0, shared_blks_read=0,
                  captured_at=datetime.now(timezone.utc), window_seconds=600.0)
    for _ in range(10):
        heavy = [[rng.uniform(130, 170) for _ in range(6)] for _ in range(2)]
        before = [[rng.uniform(65, 80) for _ in range(6)] for _ in range(2)] + heavy
        after = ([[rng.uniform(2.5, 3.5) for _ in range(6)] for _ in range(2)]
                 + [[t * rng.uniform(0.9, 1.15) for t in s] for s in heavy])
        row = bench(1, "GIN", 100, 100, size=50_000)
        row["evidence"].update(before={"timings_ms": before}, after={"timings_ms": after},
                               parameter_values={"sources": [["observed"], ["calibrated"], ["guessed"], ["guessed"]]})
        row["measured_gain_pct"] = 0.0
        sel = select_for_snapshot(None, {"window_seconds": 600.0, "table_writes": {}}, AuditSettings(),
                                  queries=[q], benchmarks=[row])
        assert [c.ddl for c in sel.chosen] == ["GIN"], seed
        chosen = sel.assignment[1]
        assert chosen["measured_gain_pct"] > 90 and chosen["evidence"]["trusted_sets"] == [0, 1], seed
        assert confidence_basis(chosen, sel.chosen[0])[0] >= 0.9, seed


def test_a_statement_left_far_slower_is_not_a_tie_on_generated_pairs():
    """Two indexes for one statement that save within 10% of each other in milliseconds, yet one
    leaves the statement several times slower than the other (19.3 ms cut to 1.9 or to 0.23: an
    `ORDER BY ... LIMIT` served by its filter alone or by filter and sort key). The clock tells
    them apart by whole intervals, so the smaller one does not win as a tie; pairs that leave
    times within noise of each other still tie and go to the smaller."""
    from dbarch_pipeline_tests.conftest import generated_seeds

    for seed in generated_seeds(2):
        print(f"seed={seed} (replay with DBARCH_TEST_SEEDS={seed})")
        rng = random.Random(seed)
        for case in range(60):
            before = rng.uniform(5, 60)
            fast = rng.uniform(0.005, 0.03)                     # what the better index leaves (ratio)
            factor = rng.choice([rng.uniform(3, 12), rng.uniform(1.0, 1.3)])
            slow = fast * factor
            spread = rng.uniform(0.05, 0.2)
            rows = [bench(1, "small", before, before * slow, size=1 << 20,
                          ci=(slow * (1 - spread), slow * (1 + spread))),
                    bench(1, "wide", before, before * fast, size=1 << 22,
                          ci=(fast * (1 - spread), fast * (1 + spread)))]
            rng.shuffle(rows)
            sel = select_indexes(rows, {1: rng.uniform(0.1, 5)}, table_writes={}, min_gain_pct=10)
            expect = ["wide"] if slow * (1 - spread) >= 2 * fast * (1 + spread) else ["small"]
            assert [c.ddl for c in sel.chosen] == expect, (seed, case, before, fast, factor, spread)
