"""Side effects are timed only where they can change the decision (audit.settle_side_effects).

A candidate's effect on the other statements of its table is re-planned for every candidate, but
timed only for the indexes the selection picks — on the measured rows, or with every untimed side
effect credited with the planner's expected saving — and the selection is run again until every
pick's side effects are timed. The rows here are built in the test (what the clock would have said);
the selection is the real one (`select_indexes`). Generated workloads are replayed with
DBARCH_TEST_SEEDS=s1,s2."""

from __future__ import annotations

import random

import pytest

from dbarch_pipeline.advisor.selection import select_indexes
from dbarch_pipeline.audit import settle_side_effects

from .conftest import generated_seeds

RATE = {1: 1.0, 2: 1.0, 3: 1.0}


def _row(qid: int, ddl: str, before: float, after: float, *, cross: bool = False, size: int = 1 << 20,
         table: str = "t") -> dict:
    gain = (before - after) / before * 100
    return {"queryid": qid, "ddl": ddl, "status": "measured", "cost_before": before, "cost_after": after,
            "ms_before": before, "ms_after": after, "estimated_gain_pct": gain, "measured_gain_pct": gain,
            "confidence": 0.9 if not cross else 0.5,
            "evidence": {"index_used": True, "cross_statement": cross, "regression": after > before * 1.1,
                         "index_bytes": size, "write_ms_per_row": 0.0,
                         "spec": {"schema": "public", "table": table}}}


def _deferred(qid: int, ddl: str, planner_saving: float, size: int = 1 << 20, table: str = "t") -> dict:
    return {"queryid": qid, "ddl": ddl, "status": "deferred", "cost_before": None, "cost_after": None,
            "ms_before": None, "ms_after": None, "estimated_gain_pct": planner_saving * 100,
            "measured_gain_pct": None, "confidence": None,
            "evidence": {"index_used": True, "cross_statement": True, "deferred": True,
                         "planner_saving": planner_saving, "index_bytes": size, "write_ms_per_row": 0.0,
                         "spec": {"schema": "public", "table": table}}}


def _select(rows: list[dict], rates: dict[int, float] = RATE):
    return select_indexes(rows, rates, table_writes={}, min_gain_pct=10.0,
                          observed_ms={q: 10.0 for q in rates})


def _settle(rows, pending, clock):
    """Run the rule; `clock[(ddl, qid)]` is what timing that side effect gives. Returns the ddls timed."""
    timed: list[str] = []

    def time_them(ddl, deferred):
        timed.append(ddl)
        return [clock[(ddl, r["queryid"])] for r in deferred if (ddl, r["queryid"]) in clock]

    settle_side_effects(rows, pending, sorted({r["ddl"] for r in rows} | set(pending)), _select, time_them)
    return timed


def test_only_the_picked_index_has_its_side_effects_timed():
    """Two variants serve statement 1; the larger is not picked and the planner expects little of it
    on statement 2 (which has its own index): its side effect is never timed."""
    rows = [_row(1, "X", 10, 1, size=1 << 20), _row(1, "X_incl", 10, 1, size=1 << 22), _row(2, "W", 10, 1)]
    pending = {"X": [_deferred(2, "X", 0.03)], "X_incl": [_deferred(2, "X_incl", 0.03, size=1 << 22)]}
    clock = {("X", 2): _row(2, "X", 10, 9.8, cross=True), ("X_incl", 2): _row(2, "X_incl", 10, 9.8, cross=True)}
    timed = _settle(rows, pending, clock)
    assert timed == ["X"]
    assert list(pending) == ["X_incl"]           # left untimed, and the final selection does not pick it
    assert {c.ddl for c in _select(rows).chosen} == {"X", "W"}


def test_a_side_effect_the_planner_expects_to_matter_is_timed_and_can_carry_the_index():
    """Z serves statement 1 as well as X does, and the planner expects it to serve statement 2 too:
    credited with that, Z is picked, so its side effect is timed; measured, one index serves both."""
    rows = [_row(1, "X", 10, 1, size=1 << 20), _row(1, "Z", 10, 1, size=1 << 21), _row(2, "W", 10, 1)]
    pending = {"Z": [_deferred(2, "Z", 0.9, size=1 << 21)]}
    clock = {("Z", 2): _row(2, "Z", 10, 1, cross=True, size=1 << 21)}
    assert {c.ddl for c in _select(rows).chosen} == {"X", "W"}   # without the side effect: two indexes
    assert _settle(rows, pending, clock) == ["Z"]
    assert not pending
    assert [c.ddl for c in _select(rows).chosen] == ["Z"]


def test_a_regression_found_on_a_pick_brings_in_the_next_one_and_times_it_too():
    """The picked X slows statement 2 by 40%: selected again, X2 takes its place, and X2's side
    effect is timed in turn (no regression): the final pick has every side effect timed."""
    rows = [_row(1, "X", 10, 1, size=1 << 20), _row(1, "X2", 10, 1.5, size=1 << 20), _row(2, "W", 10, 1)]
    pending = {"X": [_deferred(2, "X", 0.02)], "X2": [_deferred(2, "X2", 0.02)]}
    clock = {("X", 2): _row(2, "X", 10, 14, cross=True), ("X2", 2): _row(2, "X2", 10, 10.1, cross=True)}
    assert _settle(rows, pending, clock) == ["X", "X2"]
    final = _select(rows)
    assert {c.ddl for c in final.chosen} == {"X2", "W"} and "X" in final.declined


@pytest.mark.parametrize("seed", generated_seeds(3))
def test_every_pick_has_its_side_effects_timed_on_generated_workloads(seed):
    """Random workloads (statements, variants per statement, side effects of every kind, some of
    them regressions): when the rule stops, no picked index has a side effect left untimed, so no
    pick slows another statement unseen; and it never times more than timing everything would."""
    print(f"seed={seed} (replay with DBARCH_TEST_SEEDS={seed})")
    rng = random.Random(seed)
    left_untimed = 0
    for case in range(40):
        n_statements = rng.randint(2, 8)
        rates = {q: rng.choice([0.1, 1.0, 5.0]) for q in range(1, n_statements + 1)}
        rows, pending, clock = [], {}, {}
        for q in rates:
            for v in range(rng.randint(1, 3)):
                ddl = f"i{q}_{v}"
                size = 1 << rng.randint(18, 24)
                rows.append(_row(q, ddl, 10.0, 10.0 * rng.uniform(0.01, 1.2), size=size))
                for other in rates:
                    if other == q or rng.random() < 0.5:
                        continue
                    true_after = 10.0 * rng.choice([rng.uniform(0.01, 0.9), rng.uniform(0.95, 1.05),
                                                    rng.uniform(1.15, 2.0)])
                    pending.setdefault(ddl, []).append(_deferred(other, ddl, rng.uniform(0.0, 0.95), size=size))
                    clock[(ddl, other)] = _row(other, ddl, 10.0, true_after, cross=True, size=size)
        everything = len(pending)
        timed: list[str] = []

        def time_them(ddl, deferred):
            timed.append(ddl)
            return [clock[(ddl, r["queryid"])] for r in deferred]

        def select(rs):
            return _select(rs, rates)

        settle_side_effects(rows, pending, sorted({r["ddl"] for r in rows}), select, time_them)
        picked = {c.ddl for c in select(rows).chosen}
        assert not picked & set(pending), (seed, case, picked & set(pending))
        assert len(timed) == len(set(timed)) <= everything, (seed, case)
        for ddl in picked:
            slowed = [k for k, r in clock.items() if k[0] == ddl and r["evidence"]["regression"]]
            assert all(any(r is clock[k] for r in rows) for k in slowed), (seed, case, ddl)
        left_untimed += len(pending)
    assert left_untimed > 0, seed   # the rule spares the indexes that are not picked


def test_deferred_side_effects_are_planned_not_timed_and_a_close_call_gets_a_side_effects_runs(server):
    """On a table built here: with `defer_others`, another statement whose plan uses the index gets
    a `deferred` row with the planner's expected saving and no timing; `time_side_effects` times it
    later as a side effect. An owner joined to a big unindexed table, whose plan uses the index but
    whose cost the planner expects it to cut by under 10%, is timed with a side effect's 3 runs per
    set, never the full runs or extra rounds."""
    import psycopg

    from dbarch_pipeline.advisor.analyze import analyze
    from dbarch_pipeline.advisor.catalog import Catalog
    from dbarch_pipeline.bench.runner import (CLOSE_CALL_RUNS, DEFERRED, PLANNER_MIN_SAVING, BenchSettings,
                                              evaluate_candidate, prepare, sibling_timings,
                                              time_side_effects, twin_of)
    from dbarch_pipeline.models import IndexCandidate

    from .conftest import fresh_database

    url = fresh_database("dbarch_test_side_effects")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, k int, v int, pad text)")
        conn.execute("INSERT INTO t SELECT g, g % 5000, g % 7, repeat('p', 8) FROM generate_series(1, 60000) g")
        conn.execute("CREATE TABLE u (id int)")
        conn.execute("INSERT INTO u SELECT g % 60000 FROM generate_series(1, 1000000) g")
        conn.execute("VACUUM ANALYZE t, u")
        catalog = Catalog(conn)
        settings = BenchSettings(runs=5, param_sets=2, max_runs=10, measure_write_cost=False)
        texts = {1: "SELECT id, pad FROM t WHERE k = $1", 2: "SELECT v FROM t WHERE k = $1",
                 3: "SELECT count(*) FROM t JOIN u ON u.id = t.id WHERE t.k = $1"}
        items = {q: prepare(conn, q, text, analyze(text), catalog, settings) for q, text in texts.items()}
        cand = IndexCandidate("public", "t", ("k",), "k")
        with twin_of(conn, settings) as twin:
            rows = evaluate_candidate(conn, cand, [items[1], items[3]], [items[2]], settings, twin=twin,
                                      defer_others=True)
            deferred = [r for r in rows if r["status"] == DEFERRED]
            assert [r["queryid"] for r in deferred] == [2], rows
            assert deferred[0]["ms_before"] is None and deferred[0]["evidence"]["planner_saving"] > 0.5
            joined = next(r for r in rows if r["queryid"] == 3)
            assert joined["evidence"]["index_used"], joined["evidence"]
            assert joined["evidence"]["planner_saving"] < PLANNER_MIN_SAVING, joined["evidence"]["planner_saving"]
            # a short look (one run on two sets) when the clock agrees with the planner, else 3 runs
            if joined["evidence"].get("short_look"):
                assert [len(t) for t in joined["evidence"]["after"]["timings_ms"]] == [1, 1], joined["evidence"]
                assert not joined["evidence"]["regression"]
            else:
                assert joined["evidence"]["runs_per_set"] in (1, settings.first_runs, CLOSE_CALL_RUNS), joined["evidence"]
            again = time_side_effects(conn, cand, [], settings, twin=twin, again=[items[3]])
            assert [r["queryid"] for r in again] == [3] and not again[0]["evidence"]["cross_statement"]
            assert again[0]["evidence"]["timed_again"]
            assert again[0]["evidence"]["runs_per_set"] in (settings.first_runs, CLOSE_CALL_RUNS)
            owner = next(r for r in rows if r["queryid"] == 1)
            timed = time_side_effects(conn, cand, [items[2]], settings, twin=twin, measured=owner["evidence"])
            # a sibling differing only in INCLUDE columns that gives statement 2 the same plan shape
            # reuses that timing; one that turns it into an index-only scan is timed anew
            same = IndexCandidate("public", "t", ("k",), "k", include=("pad",))
            only = IndexCandidate("public", "t", ("k",), "k", include=("v",))
            reused = time_side_effects(conn, same, [items[2]], settings, twin=twin, known=sibling_timings(timed, same))
            anew = time_side_effects(conn, only, [items[2]], settings, twin=twin, known=sibling_timings(timed, only))
        assert [r["queryid"] for r in timed] == [2]
        assert timed[0]["status"] == "measured" and timed[0]["evidence"]["cross_statement"]
        assert timed[0]["evidence"]["index_bytes"] == owner["evidence"]["index_bytes"]
        assert timed[0]["confidence"] <= 0.5
        assert reused[0]["evidence"]["timed_with"] == cand.label() and reused[0]["evidence"]["index"] == same.label()
        assert reused[0]["evidence"]["after"] == timed[0]["evidence"]["after"]
        assert "timed_with" not in anew[0]["evidence"], anew[0]["evidence"]
        assert anew[0]["evidence"]["plan_shape"] != timed[0]["evidence"]["plan_shape"]


def _look(qid: int, ddl: str, before: list, after: list, table: str, *, configuration=None) -> dict:
    """A row with per-set timings: a short look (one run on two sets), or a configuration's."""
    med = lambda sets: sum(sorted(s)[len(s) // 2] for s in sets) / len(sets)   # noqa: E731
    row = _row(qid, ddl, med(before), med(after), table=table)
    row["evidence"].update(before={"timings_ms": before}, after={"timings_ms": after})
    if configuration:
        row["evidence"]["configuration"] = [{"ddl": d, "table": f"public.{t}", "label": d, "index_bytes": 1 << 20,
                                             "write_ms_per_row": 0.0} for d, t in configuration]
    else:
        row["evidence"].update(short_look=True, provisional="a look until its configuration is measured")
    return row


def _owner(qid: int) -> dict:
    return {"queryid": qid, "status": "deferred", "evidence": {"owner": True}}


@pytest.mark.parametrize("together_ms, timed_again", [(1.0, False), (40.0, True)])
def test_a_join_member_served_far_better_by_its_configuration_keeps_its_look(together_ms, timed_again):
    """A join's members had a short look each (the other table's scan remains: 20-30% alone) and
    their configuration was measured. When every run of the set is 4.4x faster than every run of
    the index alone, the selection serves the statement with the set whatever the member alone
    gives, so neither look is timed in full and each names the configuration; when the set is only
    2x faster, the picked members are timed in full as before."""
    before = [[100.0], [110.0]]
    rows = [_look(1, "A", before, [[80.0], [85.0]], "a"), _look(1, "B", before, [[70.0], [75.0]], "b"),
            _look(1, "A;\nB", [[100.0, 101.0]] * 4, [[together_ms, together_ms * 1.05]] * 4, "a",
                  configuration=[("A", "a"), ("B", "b")])]
    pending = {"A": [_owner(1)], "B": [_owner(1)]}
    clock = {("A", 1): _row(1, "A", 100, 80, table="a"), ("B", 1): _row(1, "B", 100, 70, table="b")}
    timed = _settle(rows, pending, clock)
    final = _select(rows)
    assert {c.ddl for c in final.chosen} == {"A", "B"} and final.assignment[1]["ddl"] == "A;\nB"
    looks = [r for r in rows if r["evidence"].get("short_look")]
    if timed_again:
        assert sorted(timed) == ["A", "B"] and not pending
    else:
        assert timed == [] and sorted(pending) == ["A", "B"]
        assert len(looks) == 2 and all(r["evidence"]["served_by_configuration"]["ms_after"] < 2 for r in looks)
