"""The generated quality suite's own parts, at a tiny scale: the seeded generator (every statement of
the grammar runs with the application's values on the data it loads), the oracle's candidate space
and measured search, and the scoring and calibration arithmetic. Seeds are printed for replay."""

from __future__ import annotations

import random

import psycopg
import pytest
from psycopg import sql

from benchmarks.quality import generated, measure, oracle, scoring
from benchmarks.quality.workloads import bind_ints_as_bigint

from .conftest import fresh_database

SEED = random.randrange(1, 100_000)


def test_the_same_seed_draws_the_same_workload_and_others_differ():
    print(f"seed {SEED}")
    a, b = generated.draw_workload(SEED), generated.draw_workload(SEED)
    assert [s.text for s in a.statements] == [s.text for s in b.statements]
    assert a.schema == b.schema
    others = {generated.draw_workload(SEED + k).schema.child for k in range(1, 8)}
    sizes = {generated.draw_workload(SEED + k).schema.rows["event"] for k in range(1, 8)}
    assert len(sizes) > 1 and len(others | {a.schema.child}) > 1
    assert generated.draw_schema(SEED, 5.0).rows["event"] >= 4 * generated.draw_schema(SEED, 1.0).rows["event"]
    # every workload has reads, statements needing no index and writes
    kinds = {s.expect for s in a.statements}
    assert "write" in kinds and any("no index" in k or "already served" in k or "unselective" in k for k in kinds)


def test_variants_are_distinct_statements_to_pg_stat_statements():
    wl = generated.variants(SEED, 40, scale=0.01)
    reads = [s for s in wl.statements if s.is_read]
    assert len(reads) == 40
    assert len({measure.fuzzy(s.text) for s in reads}) == 40


def test_oracle_candidates_cover_both_orders_opclasses_and_both_join_sides():
    schema = generated.draw_schema(SEED, 0.01)
    rng = random.Random(SEED)
    join = generated._t_join2(schema, rng)
    labels = {c.label() for c in oracle.candidates(join)}
    assert f"{schema.child} USING btree (parent_id)" in labels
    assert f"{schema.event} USING btree (child_id)" in labels
    recent = generated._t_child_by_parent_recent(schema, rng)
    labels = {c.label() for c in oracle.candidates(recent)}
    assert {f"{schema.child} USING btree (parent_id, updated_at)",
            f"{schema.child} USING btree (updated_at, parent_id)"} <= labels
    assert f"{schema.child} USING btree (title text_pattern_ops)" in {
        c.label() for c in oracle.candidates(generated._t_title_prefix(schema, rng))}
    assert {f"{schema.child} USING gin (attrs)", f"{schema.child} USING gin (attrs jsonb_path_ops)"} == {
        c.label() for c in oracle.candidates(generated._t_attrs_contains(schema, rng))}
    assert f"{schema.parent} USING btree ((lower(email)))" in {
        c.label() for c in oracle.candidates(generated._t_parent_login(schema, rng))}


def test_the_grammar_runs_on_its_data_and_the_oracle_finds_the_foreign_key_index(server):
    print(f"seed {SEED}")
    wl = generated.draw_workload(SEED, 0.05)
    url = fresh_database("dbarch_test_quality_gen")
    schema = wl.schema
    with psycopg.connect(url, autocommit=True) as conn:
        generated.load(conn, schema)
        conn.execute("VACUUM ANALYZE")
        bind_ints_as_bigint(conn)
        values = generated.samples(conn, schema, SEED)
        rng = random.Random(SEED)
        every = [t(schema, rng) for t in generated.READS + generated.NO_INDEX + generated.WRITES]
        for st in every:
            for _ in range(2):
                with conn.transaction(force_rollback=True):
                    cur = conn.execute(sql.SQL(st.text), st.args(values, rng))
                    if st.is_read:
                        cur.fetchall()
    by_child = generated._t_events_by_child(schema, rng)
    window = generated._t_events_in_window(schema, rng)
    statements = [by_child, window]
    sets = {s.name: [s.args(values, rng) for _ in range(2)] for s in statements}
    with measure.measurement_connection(url) as conn:
        bind_ints_as_bigint(conn)
        base = {s.name: measure.time_statement(conn, s, sets[s.name], 1).ms for s in statements}
        found = oracle.search(conn, statements, sets, base, runs=1, budget_s=20)
        assert not found.failed
        # the candidate was built and timed; it is kept when it is at least oracle.KEEP times faster
        # (at this tiny scale a hot key can return so many rows that it is not)
        label = f"{schema.event} USING btree (child_id)"
        timed = found.tried[by_child.name]
        assert set(timed) <= {label}       # timed only when the plan used it
        if by_child.name in found.best:
            config, ms = found.best[by_child.name]
            assert [c.label() for c in config] == [label] and base[by_child.name] >= oracle.KEEP * ms
        elif timed:
            assert base[by_child.name] < oracle.KEEP * timed[label]
        # nothing the search built survives it
        assert not any(ix.name.startswith("oq_") for ix in measure.indexes(conn).values())


def test_scoring_rules_on_generated_figures():
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    for _ in range(500):
        base, orc, ms = rng.uniform(0.5, 50), rng.uniform(0.01, 50), rng.uniform(0.01, 50)
        up, up_o = base / ms, base / orc
        assert scoring.is_fixed(base, orc, ms) == (up >= 2 and up >= up_o / 2)
        assert scoring.is_fixed(base, orc, ms, 1.0) == (up >= 2 and (up >= up_o / 2 or ms < 1.0))
    assert scoring.fixable({"a": 10, "b": 10, "c": 0.5}, {"a": 1, "b": 6, "c": 0.01}) == ["a"]
    ddl = 'CREATE INDEX CONCURRENTLY "t_a_idx" ON "public"."t" ("a") INCLUDE ("b")'
    assert scoring.index_name(ddl) == "t_a_idx"
    assert scoring.shape(ddl) == scoring.shape('CREATE INDEX other ON "public"."t" ("a") INCLUDE ("b");')
    assert scoring.shape(ddl) != scoring.shape('CREATE INDEX x ON "public"."t" ("a")')
    audit = {"queries": [
        {"queryid": 1, "recommendation": "CREATE INDEX ..."},
        {"queryid": 2, "recommendation": None, "why_none": "benchmark failed: invalid input syntax for type interval"},
        {"queryid": 3, "recommendation": None, "why_none": "not benchmarked (statement not safe to execute, or skipped)"},
        {"queryid": 4, "recommendation": None, "why_none": "no candidate index (already indexed, ...)"}]}
    assert [(u["queryid"], u["named"]) for u in scoring.unmeasured(audit)] == [(2, True), (3, False)]
    records = [{"confidence": c, "held": h} for c, h in [(0.95, True), (0.92, False), (0.85, True), (0.4, True),
                                                          (None, True)]]
    table = {b.label(): (b.count, b.held) for b in scoring.calibration_table(records)}
    assert table["0.9-1.0"] == (2, 1) and table["0.8-0.9"] == (1, 1) and table["0.3-0.5"] == (1, 1)
    assert sum(c for c, _ in table.values()) == 4
    assert "| 0.9-1.0 | 2 | 50% (1/2) |" in scoring.format_calibration(scoring.calibration_table(records))
    runs = [{"fixed_share": 1.0, "vs_oracle": 1.1}, {"fixed_share": 0.5, "vs_oracle": 1.6}]
    assert scoring.summarize(runs, "fixed_share") == {"mean": 0.75, "worst": 0.5}
    assert scoring.summarize(runs, "vs_oracle")["worst"] == 1.6
