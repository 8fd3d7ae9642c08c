"""Applying an index configuration for real, replaying the workload, and reading pg_stat_statements.

The replay times every statement with the same parameter values in every configuration: for each
parameter set one warm-up execution, then `runs` timed ones on the client (execute + fetch, as the
application sees it); a statement's time is the mean over its parameter sets of each set's median.
Writes run inside a transaction that is always rolled back, so every configuration sees the same
data. Auto-prepare is off, so each execution is planned with its values (a custom plan), the way
dbarch measures too. The plan of each parameter set is read with EXPLAIN to learn which indexes the
statement uses.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .workloads import Statement


@dataclass
class Timing:
    ms: float                                   # mean over parameter sets of the median run
    set_medians: list[float]
    indexes_used: set[str] = field(default_factory=set)


@dataclass
class AddedIndex:
    name: str
    schema: str
    table: str
    bytes: int
    ddl: str


@dataclass
class Applied:
    added: list[AddedIndex]
    failed: list[tuple[str, str]]               # (ddl, error)
    seconds: float

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.added)


def measurement_connection(url: str) -> psycopg.Connection:
    # prepare_threshold=None: no server-side prepared statements, a custom plan per execution
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


# -- indexes ------------------------------------------------------------------------------------------

INDEXES = sql.SQL(
    "SELECT i.relname, n.nspname, t.relname, pg_relation_size(i.oid), pg_get_indexdef(i.oid) "
    "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
    "JOIN pg_namespace n ON n.oid = i.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')")


def indexes(conn: psycopg.Connection) -> dict[str, AddedIndex]:
    return {f"{r[1]}.{r[0]}": AddedIndex(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(INDEXES)}


def apply(conn: psycopg.Connection, ddls: list[sql.Composable]) -> Applied:
    """Create the indexes for real, then ANALYZE the tables that got an expression index (which needs
    its statistics). A DDL that fails (e.g. a duplicate name) is recorded, not fatal."""
    started = time.perf_counter()
    before = indexes(conn)
    failed = []
    for ddl in ddls:
        try:
            conn.execute(ddl)
        except psycopg.Error as exc:
            failed.append((ddl.as_string(conn), str(exc).strip().splitlines()[0]))
    after = indexes(conn)
    added = [ix for key, ix in after.items() if key not in before]
    analyze_expression_tables(conn, [(ix.schema, ix.name) for ix in added])
    return Applied(added, failed, time.perf_counter() - started)


def analyze_expression_tables(conn: psycopg.Connection, index_names: list[tuple[str, str]]) -> None:
    """ANALYZE the tables that got an expression index, which has no statistics until then. Tables
    that got only column indexes keep the statistics every configuration shares: a fresh ANALYZE
    samples other rows, and a plan that flips on the sample would be charged to the index."""
    tables = set()
    for schema, name in index_names:
        row = conn.execute(
            "SELECT n.nspname, t.relname FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE x.indexrelid = to_regclass(%s) AND x.indexprs IS NOT NULL",
            (sql.Identifier(schema, name).as_string(conn),)).fetchone()
        if row:
            tables.add(row)
    for schema, table in sorted(tables):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))


def drop(conn: psycopg.Connection, applied: Applied) -> None:
    for ix in applied.added:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}.{}").format(sql.Identifier(ix.schema),
                                                                   sql.Identifier(ix.name)))


# -- replay -------------------------------------------------------------------------------------------

def _plan_indexes(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans") or []:
        found |= _plan_indexes(child)
    return found


def plan_indexes(conn: psycopg.Connection, st: Statement, params: tuple) -> set[str]:
    doc = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(st.text), params).fetchone()[0]
    return _plan_indexes((doc[0] if isinstance(doc, list) else doc)["Plan"])


def run_once(conn: psycopg.Connection, st: Statement, params: tuple) -> float:
    """Milliseconds for one execution; writes are rolled back."""
    query = sql.SQL(st.text)
    if st.is_read:
        with conn.cursor() as cur:
            t = time.perf_counter()
            cur.execute(query, params)
            cur.fetchall()
            return 1000 * (time.perf_counter() - t)
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        t = time.perf_counter()
        cur.execute(query, params)
        return 1000 * (time.perf_counter() - t)


FAST_MS = 2.0       # statements faster than this get FAST_RUNS_FACTOR times the runs: they cost
FAST_RUNS_FACTOR = 5  # nothing, and a median of a few sub-millisecond runs is mostly scheduler noise


def time_statement(conn: psycopg.Connection, st: Statement, param_sets: list[tuple], runs: int,
                   warmup: int = 1) -> Timing:
    medians = []
    used: set[str] = set()
    for params in param_sets:
        used |= plan_indexes(conn, st, params)
        warm = min(run_once(conn, st, params) for _ in range(max(1, warmup)))
        n = runs * FAST_RUNS_FACTOR if warm < FAST_MS else runs
        medians.append(statistics.median(run_once(conn, st, params) for _ in range(n)))
    return Timing(statistics.fmean(medians), medians, used)


def replay(conn: psycopg.Connection, statements: list[Statement], param_sets: dict[str, list[tuple]],
           runs: int) -> dict[str, Timing]:
    return {st.name: time_statement(conn, st, param_sets[st.name], runs) for st in statements}


# -- interleaved A/B: does an index configuration really slow a statement down? -------------------------

@dataclass
class ABResult:
    """A statement timed in alternating rounds with and without the indexes it is exposed to. Each
    arm of a round is the replay's figure (mean over the parameter sets of each set's median run),
    with the same parameter sets and the same number of runs in both arms."""
    statement: str
    indexes: list[str]                          # the toggled indexes
    rounds: list[tuple[float, float]]           # (with ms, without ms) per round, in the order timed
    runs: int                                   # timed runs per parameter set in each arm
    seconds: float                              # the whole comparison, index builds included

    @property
    def ratios(self) -> list[float]:
        return [w / max(wo, 1e-6) for w, wo in self.rounds]

    @property
    def ratio(self) -> float:
        """The median of the per-round with/without ratios: a round is two neighbouring blocks, so
        whatever the machine did at that moment weighs on both arms of it."""
        return statistics.median(self.ratios)

    @property
    def with_ms(self) -> float:
        return statistics.median(w for w, _ in self.rounds)

    @property
    def without_ms(self) -> float:
        return statistics.median(wo for _, wo in self.rounds)

    @property
    def diff_ms(self) -> float:
        return statistics.median(w - wo for w, wo in self.rounds)

    def harmed(self, harm: float, noise_ms: float) -> bool:
        return self.ratio >= harm and self.diff_ms >= noise_ms

    def line(self, harm: float, noise_ms: float) -> str:
        per = "; ".join(f"{w:.3f}/{wo:.3f}" for w, wo in self.rounds)
        return (f"A/B {self.statement}: with/without ms per round {per}; ratio {self.ratio:.2f}, "
                f"{self.diff_ms:+.3f} ms: {'CONFIRMED harmful' if self.harmed(harm, noise_ms) else 'cleared'} "
                f"({len(self.indexes)} index(es) toggled, {self.runs} runs per set, {self.seconds:.1f}s)")

    def as_json(self, harm: float, noise_ms: float) -> dict:
        return {"statement": self.statement, "indexes": self.indexes,
                "rounds": [{"with_ms": round(w, 4), "without_ms": round(wo, 4)} for w, wo in self.rounds],
                "ratio": round(self.ratio, 3), "with_ms": round(self.with_ms, 4),
                "without_ms": round(self.without_ms, 4), "diff_ms": round(self.diff_ms, 4),
                "runs": self.runs, "seconds": round(self.seconds, 1),
                "verdict": "harmful" if self.harmed(harm, noise_ms) else "cleared"}


def time_arm(conn: psycopg.Connection, st: Statement, param_sets: list[tuple], runs: int) -> float:
    """One arm of an A/B round: per parameter set one warm-up (which also replans after the indexes
    changed and reads their pages in), then exactly `runs` timed executions; the mean of the sets'
    medians, as the replay figures a statement."""
    medians = []
    for params in param_sets:
        run_once(conn, st, params)
        medians.append(statistics.median(run_once(conn, st, params) for _ in range(runs)))
    return statistics.fmean(medians)


def _drop_indexes(conn: psycopg.Connection, toggled: list[AddedIndex]) -> None:
    for ix in toggled:
        conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(ix.schema), sql.Identifier(ix.name)))


def _create_indexes(conn: psycopg.Connection, toggled: list[AddedIndex]) -> None:
    for ix in toggled:
        conn.execute(sql.SQL(ix.ddl))
    # an expression index's statistics went with it; the configuration had them (measure.apply)
    analyze_expression_tables(conn, [(ix.schema, ix.name) for ix in toggled])


def interleaved(conn: psycopg.Connection, st: Statement, param_sets: list[tuple], toggled: list[AddedIndex],
                runs: int, rounds: int = 3) -> ABResult:
    """Time `st` with and without the indexes `toggled` (which must exist), alternating: with,
    without, with, without, ... `rounds` rounds. The indexes are really dropped and re-created
    between the arms (the faithful toggle: the statement sees the table exactly as the application
    would, with a warm relation cache, in both arms); they exist again on return. Index builds cost
    time, which is acceptable because only statements that look harmed get here."""
    started = time.perf_counter()
    out = []
    for _ in range(rounds):
        with_ms = time_arm(conn, st, param_sets, runs)
        _drop_indexes(conn, toggled)
        try:
            without_ms = time_arm(conn, st, param_sets, runs)
        finally:
            _create_indexes(conn, toggled)
        out.append((with_ms, without_ms))
    return ABResult(st.name, [ix.name for ix in toggled], out, runs, time.perf_counter() - started)


# -- pg_stat_statements ---------------------------------------------------------------------------

def fuzzy(text: str) -> str:
    """A statement's text with every constant and parameter as `?`, for matching our statements with
    pg_stat_statements' normalized texts (which turn literals into `$n` and, since PostgreSQL 18,
    squash IN lists into `($1 /*, ... */)`)."""
    t = re.sub(r"/\*.*?\*/", "", text)
    t = re.sub(r"'(?:[^']|'')*'", "?", t)
    t = re.sub(r"\$\d+", "?", t)
    t = re.sub(r"(?<![\w.])\d+(?:\.\d+)?", "?", t)
    t = re.sub(r"\s+", " ", t).strip().lower()
    return re.sub(r"\(\s*\?(?:\s*,\s*\?)*\s*\)", "(?)", t)


@dataclass
class StatEntry:
    queryid: int
    query: str
    calls: int
    rows: int
    mean_ms: float


def pg_stat_statements(conn: psycopg.Connection) -> list[StatEntry]:
    rows = conn.execute(
        "SELECT queryid, query, calls, rows, mean_exec_time FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel")
    return [StatEntry(*r) for r in rows]


def match_statements(statements: list[Statement], entries: list[StatEntry]) -> dict[str, list[StatEntry]]:
    """Our statement name -> its pg_stat_statements entries (several when the application bound
    different parameter types, e.g. psycopg sends small ints as int2 and larger ones as int4)."""
    by_text: dict[str, list[StatEntry]] = {}
    for e in entries:
        by_text.setdefault(fuzzy(e.query), []).append(e)
    return {st.name: by_text.get(fuzzy(st.text.replace("%%", "%").replace("%s", "$0")), [])
            for st in statements}
