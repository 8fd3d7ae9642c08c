"""Quality benchmark: does dbarch pick the indexes an expert would, and do they pay off when applied?

For each workload (the demo, an e-commerce `shop`, TPC-H from tpchgen-cli) the suite loads the data
into a fresh database on the embedded PostgreSQL (with pg_stat_statements), runs VACUUM ANALYZE,
resets the statistics, runs the workload, and then compares five index configurations, each applied
for real (CREATE INDEX, ANALYZE) on the same database and dropped afterwards:

  no index        the schema as loaded (primary keys and unique constraints only)
  dbarch          the indexes of the real audit (materialize_audit through Dagster; report.audit_result)
  single-column   one btree per filtered column
  Dexter rule     planner cost halves with hypothetical (rolled-back) indexes, nothing timed
  hand-designed   hand_<workload>.sql, the reference

Every configuration replays the same statements with the same values (seeded), timed on the
client; see measure.py and the README beside this file for what each figure means. Prints, per
workload, the comparison table, a per-statement table, dbarch's recommendations and the goal
check: dbarch fixes >= 90% of the slow statements the hand-designed set fixes (>= 3x faster),
recommends nothing harmful (no statement >= 1.1x slower), and keeps the total workload time within
1.5x of the hand-designed set's. Databases are dropped at the end (unless --keep).

Run: .venv/bin/python benchmarks/quality/run_quality.py [--workload demo|shop|tpch|all] [--rows N] [--sf F]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# run as a script, the repository root is not on sys.path; benchmarks.quality needs it
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from dbarch_pipeline.embedded import drop_database, recreate_database as fresh_database  # noqa: E402
from dbarch_pipeline import embedded, report  # noqa: E402
from dbarch_pipeline.advisor.analyze import UnparseableQuery, analyze  # noqa: E402
from dbarch_pipeline.run import audit_resources, materialize_audit  # noqa: E402

from benchmarks.quality import baselines, measure  # noqa: E402
from benchmarks.quality.workloads import Statement, Workload, all_workloads, bind_ints_as_bigint  # noqa: E402

FIXED = 3.0            # a statement is fixed when it runs at least 3x faster than with no index
HELPS = 1.1            # an index helps when a statement using it runs at least 1.1x faster
HARMFUL = 1.1          # a statement at least 1.1x slower than with no index is harmed ...
NOISE_MS = 0.05        # ... by more than this per call (below it, client timing noise dominates)
GOAL_FIXED_SHARE = 0.9
GOAL_TOTAL_VS_HAND = 1.5
CONFIGS = ["no index", "dbarch", "single-column", "Dexter rule", "hand-designed"]


@dataclass
class ConfigResult:
    name: str
    applied: measure.Applied | None
    timings: dict[str, measure.Timing]
    rechecked: list[str] = field(default_factory=list)
    # statements that still looked harmed after the recheck (flagged), and the interleaved A/B that
    # decides (also of the statements named by --ab, for investigation, which are not scored)
    flagged: list[str] = field(default_factory=list)
    ab: dict[str, measure.ABResult] = field(default_factory=dict)

    def harmful(self) -> list[str]:
        """Flagged statements the interleaved A/B found at least HARMFUL times and NOISE_MS slower."""
        return [n for n in self.flagged if self.ab[n].harmed(HARMFUL, NOISE_MS)]


# -- databases ----------------------------------------------------------------------------------------





def reset_statistics(conn: psycopg.Connection) -> None:
    # the load's own counters are flushed first, then statement and table counters start together
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")
    conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                 "WHERE datname = current_database()), 0)")
    conn.execute("SELECT pg_stat_reset()")


def run_workload(conn: psycopg.Connection, wl: Workload, samples: dict, seed: int) -> float:
    """The application's traffic, interleaved, each statement in its own transaction (committed)."""
    rng = random.Random(seed)
    plan = [st for st in wl.statements for _ in range(st.calls)]
    rng.shuffle(plan)
    started = time.perf_counter()
    for st in plan:
        params = st.args(samples, rng)
        with conn.transaction():
            cur = conn.execute(sql.SQL(st.text), params)
            if st.is_read:
                cur.fetchall()
    return time.perf_counter() - started


# -- one workload -------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", flush=True)


def run_suite(wl: Workload, args: argparse.Namespace) -> dict:
    clock = Clock()
    db_name, store_name = f"dbarch_quality_{wl.name}", f"dbarch_quality_{wl.name}_store"
    print(f"\n=== {wl.title} ===", flush=True)
    try:
        url = fresh_database(db_name, pg_stat_statements=True)
        store_url = fresh_database(store_name, pg_stat_statements=False)
        with psycopg.connect(url, autocommit=True) as conn:
            clock.say("loading")
            counts = wl.load(conn, args, lambda m: None if args.quiet else clock.say(m.strip()))
            if not args.mixed_int_types:
                bind_ints_as_bigint(conn)
            conn.execute("VACUUM ANALYZE")
            clock.say("loaded: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
            samples = wl.samples(conn, random.Random(args.seed))
            replay_rng = random.Random(args.seed + 1)
            param_sets = {st.name: [st.args(samples, replay_rng) for _ in range(st.replay_sets)]
                          for st in wl.statements}
            reset_statistics(conn)
            seconds = run_workload(conn, wl, samples, args.seed + 2)
            clock.say(f"workload: {sum(st.calls for st in wl.statements)} statements in {seconds:.1f}s")
            entries = measure.pg_stat_statements(conn)
        matched = measure.match_statements(wl.statements, entries)
        unmatched = [n for n, e in matched.items() if not e]
        if unmatched:
            print(f"  (not found in pg_stat_statements: {', '.join(unmatched)})")
        name_of = {e.queryid: n for n, es in matched.items() for e in es}

        clock.say("dbarch audit (materialize_audit through Dagster)")
        audit = _audit(url, store_url, wl, args.no_auto_prepare)
        clock.say(f"audit done: {audit['slow_queries']} slow statements, "
                  f"{len(audit['recommendations'])} recommendations, {len(audit['indexes'])} indexes"
                  + (f"; FAILED: {audit['error']}" if audit.get("error") else ""))

        with measure.measurement_connection(url) as conn:
            if not args.mixed_int_types:
                bind_ints_as_bigint(conn)
            mean_rows = {n: (sum(e.rows for e in es) / max(1, sum(e.calls for e in es)) if es else None)
                         for n, es in matched.items()}
            ddls = {
                "no index": [],
                "dbarch": [sql.SQL(i["ddl"]) for i in audit["indexes"]],
                "single-column": baselines.single_column(conn, wl.statements),
            }
            clock.say("Dexter rule: building every candidate in a rolled-back transaction")
            ddls["Dexter rule"], dexter_verdicts = baselines.dexter(conn, wl.statements, mean_rows)
            ddls["hand-designed"] = baselines.hand(wl.hand_sql)
            results: dict[str, ConfigResult] = {}
            for config in CONFIGS:
                applied = measure.apply(conn, ddls[config]) if ddls[config] else None
                for ddl, error in (applied.failed if applied else []):
                    print(f"  {config}: failed {ddl}: {error}")
                timings = measure.replay(conn, wl.statements, param_sets, args.runs)
                result = ConfigResult(config, applied, timings)
                if config != "no index":
                    _recheck(conn, wl, param_sets, args.runs, results["no index"], result)
                    referee(conn, wl, param_sets, args.runs, results["no index"], result)
                results[config] = result
                if applied:
                    measure.drop(conn, applied)
                total = _total(wl, timings)
                clock.say(f"{config}: {len(applied.added) if applied else 0} indexes"
                          f"{f' built in {applied.seconds:.1f}s' if applied else ''}, "
                          f"workload {total:,.0f} ms")
        summary = _report(wl, results, audit, name_of, dexter_verdicts)
        summary["seconds"] = round(time.perf_counter() - clock.start, 1)
        clock.say(f"{wl.name} done")
        return summary
    finally:
        if not args.keep:
            drop_database(db_name)
            drop_database(store_name)


@contextlib.contextmanager
def _auto_prepare_off(active: bool) -> Iterator[None]:
    """psycopg prepares a statement server-side after 5 executions of the same text on a connection;
    dbarch's `EXPLAIN (GENERIC_PLAN)` sent without parameters then fails from the 6th time on ("bind
    message supplies 0 parameters, but prepared statement ... requires N"). With --no-auto-prepare
    the audit runs with psycopg's default threshold off, which emulates the fix (prepare=False)."""
    if not active:
        yield
        return
    original = psycopg.connect

    def connect_without_auto_prepare(*args, **kwargs):
        kwargs["prepare_threshold"] = None
        return original(*args, **kwargs)

    # dbarch opens its connections with psycopg.connect, looked up at call time
    psycopg.connect = connect_without_auto_prepare
    try:
        yield
    finally:
        psycopg.connect = original


def _audit(url: str, store_url: str, wl: Workload, no_auto_prepare: bool = False) -> dict:
    """The real audit through Dagster, read back with report.audit_result. A failing audit is a
    result too: it is reported, and the dbarch configuration then has no index."""
    resources = audit_resources(target_dsn=url, store_dsn=store_url, settings=wl.audit_settings or None)
    try:
        with _auto_prepare_off(no_auto_prepare):
            materialize_audit(resources)
    except Exception as exc:  # noqa: BLE001 - any failure of the product is reported, not raised
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause).strip():
            error += f" (caused by {type(cause).__name__}: {str(cause).strip().splitlines()[0]})"
        return {"slow_queries": 0, "recommendations": [], "indexes": [], "declined": [], "queries": [],
                "error": error}
    with resources["store"].connect() as s:
        return report.audit_result(s, target=resources["target"].target_name(),
                                   settings=resources["audit_settings"].settings())


def _recheck(conn: psycopg.Connection, wl: Workload, param_sets: dict, runs: int, base: ConfigResult,
             result: ConfigResult) -> None:
    """Time again, with twice the runs, each statement that looks harmed: one noisy sample on a
    shared machine should not condemn an index. What still looks harmed goes to the referee."""
    for st in wl.statements:
        if _harmed(base.timings[st.name].ms, result.timings[st.name].ms) and _exposed(st, result):
            result.timings[st.name] = measure.time_statement(conn, st, param_sets[st.name], runs * 2)
            result.rechecked.append(st.name)


AB_ROUNDS = 3


def referee(conn: psycopg.Connection, wl: Workload, param_sets: dict, runs: int, base: ConfigResult,
            result: ConfigResult, rounds: int = AB_ROUNDS, say=print, also: frozenset[str] = frozenset()) -> None:
    """Decide each statement that still looks harmed after the recheck by an interleaved A/B
    comparison (measure.interleaved), run while the configuration's indexes are in place: rounds of
    with, then without the configuration's indexes the statement is exposed to (the indexes its
    plans use; for a write, those on the tables it writes), dropped and re-created between the arms.
    The blocks "no index" then "configuration" were timed minutes apart: a slowdown there can be a
    window of a shared machine or the server's state after the index builds, not the indexes. In
    the A/B both arms of a round are neighbours, so such a window weighs on both. Harmful: the median
    per-round ratio >= HARMFUL and the median difference >= NOISE_MS (the definitions are unchanged;
    only how the slowdown is measured). `also`: statements to compare the same way whatever the
    screen says (--ab, to investigate); they are printed and kept, not scored."""
    for st in wl.statements:
        if st.name in result.ab:
            continue
        if not _exposed(st, result):
            if st.name in also:
                say(f"  {result.name}: A/B {st.name}: not exposed to this configuration's indexes (no plan "
                    f"uses one, or it writes no table that got one): nothing to compare")
            continue
        flagged = st.name in result.rechecked and _harmed(base.timings[st.name].ms, result.timings[st.name].ms)
        if not flagged and st.name not in also:
            continue
        n = runs * 2 * (measure.FAST_RUNS_FACTOR if result.timings[st.name].ms < measure.FAST_MS else 1)
        ab = measure.interleaved(conn, st, param_sets[st.name], _exposed_indexes(st, result), n, rounds)
        result.ab[st.name] = ab
        if flagged:
            result.flagged.append(st.name)
        say(f"  {result.name}: {ab.line(HARMFUL, NOISE_MS)}" + ("" if flagged else " [not flagged: --ab, not scored]"))


def _harmed(base_ms: float, ms: float) -> bool:
    return ms >= HARMFUL * base_ms and ms - base_ms >= NOISE_MS


@functools.cache
def _tables(text: str) -> frozenset[str]:
    try:
        return frozenset(analyze(text).tables)
    except UnparseableQuery:
        return frozenset()


def _exposed_indexes(st: Statement, result: ConfigResult) -> list[measure.AddedIndex]:
    """The configuration's indexes that can affect the statement at all: for a read, those its plans
    use; for a write, those on a table it names. Anything else that runs slower is noise."""
    added = result.applied.added if result.applied else []
    if st.is_read:
        return [ix for ix in added if ix.name in result.timings[st.name].indexes_used]
    return [ix for ix in added if ix.table in _tables(st.pg_text)]


def _exposed(st: Statement, result: ConfigResult) -> bool:
    return bool(_exposed_indexes(st, result))


def _total(wl: Workload, timings: dict[str, measure.Timing]) -> float:
    return sum(st.calls * timings[st.name].ms for st in wl.statements)


# -- report -------------------------------------------------------------------------------------------

def _speedups(wl: Workload, base: ConfigResult, result: ConfigResult) -> dict[str, float]:
    return {st.name: base.timings[st.name].ms / max(result.timings[st.name].ms, 1e-6) for st in wl.statements}


def _figures(wl: Workload, results: dict[str, ConfigResult]) -> dict[str, dict]:
    base, hand = results["no index"], results["hand-designed"]
    hand_up = _speedups(wl, base, hand)
    fixable = [st.name for st in wl.statements if hand_up[st.name] >= FIXED]
    hand_total = _total(wl, hand.timings)
    out = {}
    for config, result in results.items():
        up = _speedups(wl, base, result)
        fixed = [n for n, s in up.items() if s >= FIXED]
        harmful = result.harmful()
        not_helping = []
        for ix in (result.applied.added if result.applied else []):
            users = [n for n, t in result.timings.items() if ix.name in t.indexes_used]
            if not any(up[n] >= HELPS for n in users):
                not_helping.append({"index": ix.ddl, "used_by": users,
                                    "speedups": {n: round(up[n], 2) for n in users}})
        total = _total(wl, result.timings)
        out[config] = {
            "indexes": len(result.applied.added) if result.applied else 0,
            "fixed": fixed, "fixed_of_fixable": [n for n in fixed if n in fixable], "fixable": fixable,
            "not_helping": not_helping, "harmful": harmful, "total_ms": total,
            "vs_hand": total / hand_total if hand_total else None,
            "storage_mb": (result.applied.bytes if result.applied else 0) / 1_048_576,
            "speedups": up, "rechecked": result.rechecked,
            "harm_ab": [ab.as_json(HARMFUL, NOISE_MS) | {"flagged": n in result.flagged}
                        for n, ab in result.ab.items()],
        }
    return out


def _report(wl: Workload, results: dict[str, ConfigResult], audit: dict, name_of: dict[int, str],
            dexter_verdicts: list) -> dict:
    figures = _figures(wl, results)
    fixable = figures["hand-designed"]["fixable"]
    print(f"\n--- {wl.name}: index configurations (fixable = statements the hand-designed set makes "
          f">= {FIXED:.0f}x faster: {len(fixable)}) ---")
    header = (f"{'configuration':<15} | {'indexes':>7} | {'fixed / fixable':>15} | {'not helping':>11} | "
              f"{'harmful':>7} | {'total workload ms':>17} | {'vs hand-designed':>16} | {'storage MB':>10}")
    print(header)
    print("-" * len(header))
    for config in CONFIGS:
        f = figures[config]
        print(f"{config:<15} | {f['indexes']:>7} | {len(f['fixed_of_fixable']):>7} / {len(fixable):<5} | "
              f"{len(f['not_helping']):>11} | {len(f['harmful']):>7} | {f['total_ms']:>17,.0f} | "
              f"{f['vs_hand']:>15.2f}x | {f['storage_mb']:>10.1f}")

    print(f"\n--- {wl.name}: per statement, ms per call (speedup vs no index) ---")
    cols = CONFIGS
    print(f"{'statement':<26} {'calls':>5} " + " ".join(f"{c:>17}" for c in cols))
    for st in wl.statements:
        cells = []
        for c in cols:
            ms = results[c].timings[st.name].ms
            cells.append(f"{ms:9.2f}" + (f" ({figures[c]['speedups'][st.name]:4.1f}x)" if c != "no index"
                                        else " " * 8))
        mark = " *" if st.name in fixable else ""
        print(f"{st.name[:26]:<26} {st.calls:>5} " + " ".join(f"{c:>17}" for c in cells) + mark)
    print("  * fixable (hand-designed >= 3x)")

    _print_dbarch(wl, audit, name_of, results["dbarch"], figures["dbarch"])
    for config in ("single-column", "Dexter rule", "hand-designed"):
        f = figures[config]
        added = results[config].applied.added if results[config].applied else []
        print(f"\n{config}: {len(added)} index(es)")
        for ix in added:
            print(f"  {ix.ddl}  ({ix.bytes / 1_048_576:.1f} MB)")
        for item in f["not_helping"]:
            print(f"  not helping: {item['index']} (used by {', '.join(item['used_by']) or 'no statement'})")
        if f["harmful"]:
            print(f"  harmful to: {', '.join(f['harmful'])}")
    print("\nDexter rule, per statement (generic-plan cost before -> after with every candidate):")
    for v in dexter_verdicts:
        after = f"{v.cost_after:,.0f}" if v.cost_after is not None else "-"
        print(f"  {v.statement:<26} {v.cost_before:>12,.0f} -> {after:>12}  "
              f"{'kept ' + ', '.join(v.used) if v.kept else (v.note or 'not kept (' + (', '.join(v.used) or 'no index used') + ')')}")

    goal = _goal(wl, figures, results, audit, name_of)
    return {"workload": wl.name, "figures": {c: {k: v for k, v in f.items() if k != "speedups"}
                                             | {"speedups": {n: round(s, 2) for n, s in f["speedups"].items()}}
                                             for c, f in figures.items()},
            "timings_ms": {c: {n: round(t.ms, 3) for n, t in r.timings.items()} for c, r in results.items()},
            "audit": {k: audit[k] for k in ("slow_queries", "indexes", "declined")}
            | {"recommendations": [{k: r[k] for k in ("query", "queryid", "ddl", "measured_gain_pct", "ms_before",
                                                      "ms_after", "confidence", "shared")}
                                   | {"statement": name_of.get(r["queryid"])}
                                   for r in audit["recommendations"]]},
            "goal": goal}


def _print_dbarch(wl: Workload, audit: dict, name_of: dict[int, str], result: ConfigResult, f: dict) -> None:
    if audit.get("error"):
        print(f"\ndbarch: the audit FAILED, so no index was applied: {audit['error']}")
    print(f"\ndbarch: {audit['slow_queries']} slow statement(s) in the snapshot, "
          f"{len(audit['recommendations'])} recommendation(s), {len(audit['indexes'])} index(es) selected")
    for r in audit["recommendations"]:
        before, after = r["ms_before"], r["ms_after"]
        timing = f"{before:.2f} -> {after:.2f} ms" if before is not None and after is not None else "costed only"
        print(f"  {name_of.get(r['queryid'], '?' + str(r['queryid'])):<26} {r['ddl']}")
        print(f"  {'':<26} audit measured {timing}, gain {r['measured_gain_pct'] or 0:.1f}%, "
              f"confidence {r['confidence']:.2f}{', shared' if r['shared'] else ''}")
    by_ddl_name = {ix.name: ix for ix in (result.applied.added if result.applied else [])}
    for i in audit["indexes"]:
        serves = [name_of.get(q, "?" + str(q)) for q in i["serves_queryids"]]
        print(f"  selected: {i['ddl']}  ({i['index_bytes'] / 1_048_576:.1f} MB; serves {', '.join(serves)})")
    for ix in by_ddl_name.values():
        users = [n for n, t in result.timings.items() if ix.name in t.indexes_used]
        print(f"  applied {ix.name}: used by " + (", ".join(f"{n} ({f['speedups'][n]:.1f}x)" for n in users)
                                                  or "no statement of the replay"))
    for d in audit["declined"]:
        print(f"  declined: {d['ddl']}: {d['reason']}")
    silent = [q for q in audit["queries"] if not q.get("recommendation")]
    for q in silent:
        print(f"  no recommendation for {name_of.get(q['queryid'], '?' + str(q['queryid']))}: {q.get('why_none', '')}")
    for item in f["not_helping"]:
        print(f"  not helping: {item['index']} (used by {', '.join(item['used_by']) or 'no statement'})")
    if f["harmful"]:
        print(f"  harmful to: {', '.join(f['harmful'])}")


def _goal(wl: Workload, figures: dict, results: dict[str, ConfigResult], audit: dict,
          name_of: dict[int, str]) -> dict:
    f = figures["dbarch"]
    fixable = f["fixable"]
    share = len(f["fixed_of_fixable"]) / len(fixable) if fixable else 1.0
    checks = {
        "fixes >= 90% of fixable": share >= GOAL_FIXED_SHARE,
        "no harmful recommendation": not f["harmful"],
        "total within 1.5x of hand-designed": (f["vs_hand"] or 0) <= GOAL_TOTAL_VS_HAND,
    }
    print(f"\n--- {wl.name}: goal check ---")
    print(f"  fixes {len(f['fixed_of_fixable'])}/{len(fixable)} fixable slow statements ({share:.0%}): "
          f"{'MET' if checks['fixes >= 90% of fixable'] else 'MISSED'} (goal >= 90%)")
    why_of = {name_of.get(q["queryid"]): q for q in audit["queries"]}
    base, dbarch, hand = results["no index"], results["dbarch"], results["hand-designed"]
    for n in fixable:
        if n in f["fixed_of_fixable"]:
            continue
        q = why_of.get(n)
        why = ("not in dbarch's slow-statement snapshot" if q is None
               else f"dbarch recommended {q['recommendation']}" if q.get("recommendation")
               else q.get("why_none", ""))
        print(f"    not fixed: {n}: {base.timings[n].ms:.2f} ms with no index, {dbarch.timings[n].ms:.2f} ms "
              f"with dbarch's, {hand.timings[n].ms:.2f} ms hand-designed; {why}")
    print(f"  harmful recommendations: {len(f['harmful'])}: "
          f"{'MET' if checks['no harmful recommendation'] else 'MISSED'}")
    for n in f["harmful"]:
        ab = dbarch.ab[n]
        print(f"    {n}: {base.timings[n].ms:.3f} ms with no index -> {dbarch.timings[n].ms:.3f} ms with dbarch's "
              f"indexes; interleaved A/B {ab.with_ms:.3f} ms with, {ab.without_ms:.3f} ms without, "
              f"ratio {ab.ratio:.2f}")
    for n in dbarch.rechecked:
        if n not in f["harmful"]:
            ab = dbarch.ab.get(n) if n in dbarch.flagged else None
            print(f"    (looked harmed, cleared: {n}: {base.timings[n].ms:.3f} ms -> {dbarch.timings[n].ms:.3f} ms"
                  + (f"; interleaved A/B {ab.with_ms:.3f} ms with, {ab.without_ms:.3f} ms without, ratio {ab.ratio:.2f})"
                     if ab else "; did not hold on re-timing)"))
    print(f"  total workload {f['total_ms']:,.0f} ms vs hand-designed {figures['hand-designed']['total_ms']:,.0f} ms "
          f"= {f['vs_hand']:.2f}x: {'MET' if checks['total within 1.5x of hand-designed'] else 'MISSED'} "
          f"(goal <= 1.5x)")
    if not checks["total within 1.5x of hand-designed"]:
        gaps = sorted(((st.calls * (dbarch.timings[st.name].ms - hand.timings[st.name].ms), st.name)
                       for st in wl.statements), reverse=True)[:3]
        for gap, n in gaps:
            if gap > 0:
                print(f"    {n}: +{gap:,.0f} ms over the hand-designed set")
    if audit.get("error"):
        print(f"  the audit failed: {audit['error']}")
    ok = all(checks.values()) and not audit.get("error")
    print(f"  => {wl.name}: goal {'MET' if ok else 'MISSED'}")
    return {**checks, "met": ok, "fixed_share": share}


# -- main -----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["demo", "shop", "tpch", "all"], default="all")
    parser.add_argument("--rows", type=int, default=400_000, help="behavior_log rows of the demo")
    parser.add_argument("--sf", type=float, default=0.2, help="TPC-H scale factor")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per parameter set (after one warm-up)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--mixed-int-types", action="store_true",
                        help="bind ints as psycopg chooses (int2/int4/int8 by value) instead of bigint")
    parser.add_argument("--tpch-q12-spec", action="store_true",
                        help="TPC-H Q12 as the specification writes it (fails dbarch's audit today)")
    parser.add_argument("--no-auto-prepare", action="store_true",
                        help="run the audit with psycopg's auto-prepare off (emulates the fix of the "
                             "prepared EXPLAIN (GENERIC_PLAN) failure)")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--quiet", action="store_true", help="hide load progress")
    args = parser.parse_args(argv)

    embedded.start()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (timings are noisy when it is high)")
    workloads = all_workloads()
    if args.tpch_q12_spec:
        from benchmarks.quality.tpch import Q12_SPEC

        tpch = workloads["tpch"]
        workloads["tpch"] = dataclasses.replace(tpch, statements=[
            Q12_SPEC if st.name == Q12_SPEC.name else st for st in tpch.statements])
    chosen = list(workloads) if args.workload == "all" else [args.workload]
    summaries = [run_suite(workloads[name], args) for name in chosen]
    print("\n=== summary ===")
    for s in summaries:
        f = s["figures"]["dbarch"]
        print(f"{s['workload']:<5} dbarch fixed {len(f['fixed_of_fixable'])}/{len(f['fixable'])}, "
              f"not helping {len(f['not_helping'])}, harmful {len(f['harmful'])}, "
              f"{f['vs_hand']:.2f}x hand-designed time, {f['storage_mb']:.1f} MB: "
              f"goal {'MET' if s['goal']['met'] else 'MISSED'} ({s['seconds']:.0f}s)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2, default=str))
        print(f"wrote {args.json}")
    return {"workloads": summaries}


if __name__ == "__main__":
    main()
