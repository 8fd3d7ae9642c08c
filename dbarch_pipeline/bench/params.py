"""Values for the `$n` of a normalized statement that behave like the application's.

pg_stat_statements keeps `WHERE user_id = $1`, not the values the application sent. In order of
preference the benchmark binds:

1. **observed** values: what the application really bound, read from the server log
   (bench/observed.py) and kept in the store;
2. **calibrated** values: derived from the expression each `$n` sits in and tuned until a call
   returns about as many rows as pg_stat_statements says calls return (rows/calls), or, where the
   row count cannot tell (an aggregate), until the statement takes about its observed mean time;
3. **guessed** values: derived the same way at a default level when there is nothing to calibrate
   against.

Every `$n` is typed by what PostgreSQL infers for the statement (a prepared statement on the
sandbox), and its value is derived from the comparison it sits in: the other side's values are
sampled from real rows (PostgreSQL evaluates `md5(val)` or `lower(email)` there), and when `$n` is
inside an expression (`now() - $2::interval`, `$1 * 2`) that expression is solved for `$n` by
PostgreSQL's own arithmetic. A value that cannot be bound is a named problem ("cannot bind $2
(interval): ..."), stored in the evidence.

pg_stat_statements also turns the application's literals into `$n` (`$1 * 100` is kept as `$1 * $3`).
Where PostgreSQL then cannot type a `$n`, it is typed as the literal was (`typed_statement`); a
literal inside an indexable expression (`substr(code, $2, $3)`) comes back from the server log
(`inline_constants`), or its absence is the named reason for no candidate (`hidden_literals`).

Calibration moves one level t in [0, 1] (0: the most selective values, 1: the least) for the
parameters that have one: a LIKE prefix shortens as t grows, a range window widens, a jsonb
document loses keys, an array gains (overlap) or loses (containment) items. PostgreSQL's own row
estimate for the statement with the values bound (EXPLAIN, no execution) is compared with the target.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import psycopg
from psycopg import sql
from sqlglot import exp

from ..advisor.analyze import Predicate, QueryShape, UnparseableQuery, param_index as _param_index, parse
from ..advisor.candidates import key_sql
from ..advisor.catalog import Catalog
from ..db import rolled_back, tag
from ..safety import Verdict, check_statement
from ..safety.walls import read_only_section

DEFAULT_LIMIT_VALUE = "50"
DEFAULT_LEVEL = 0.01            # uncalibrated: a narrow window, a long prefix, a full document
CALIBRATION_STEPS = 8           # bisection steps on the row estimate (planning only, cheap)
LEVEL_DECADES = 6.0             # levels from 1e-6 to 1
TIME_STEPS = 5                  # bisection steps on the clock (executions), first parameter set only
OBSERVED, CALIBRATED, GUESSED = "observed", "calibrated", "guessed"
REDACTED = "(observed)"

NUMERIC_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
INTEGER_TYPES = {"smallint", "integer", "bigint"}
EPOCH_TYPES = {"date", "timestamp without time zone", "timestamp with time zone", "interval"}

# A harmless value per type for parameters that stand for constants (multipliers, literals in CASE).
NEUTRAL = {"integer": "1", "bigint": "1", "smallint": "1", "numeric": "1", "double precision": "1",
           "real": "1", "text": "x", "character varying": "x", "boolean": "true", "date": "2000-01-01",
           "timestamp without time zone": "2000-01-01", "timestamp with time zone": "2000-01-01",
           "interval": "1 day"}

COMPARISONS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "<>": "<>"}
GIN = {exp.ArrayContainsAll: "contains", exp.JSONBContainsTopKey: "key", exp.JSONBContainsAnyTopKeys: "key",
       exp.JSONBContainsAllTopKeys: "key", exp.ArrayOverlaps: "overlap"}
TRANSPARENT = (exp.Cast, exp.Paren)


@dataclass(frozen=True)
class ValueTarget:
    """What the application's calls look like, from pg_stat_statements."""

    rows_per_call: float | None = None
    mean_ms: float | None = None


@dataclass
class ParameterPlan:
    """How each `$n` gets its value. `unmapped` lists the ones no comparison or LIMIT tells about;
    `problems` the named reasons some could not be bound; `provenance` the source of every value of
    every set (observed, calibrated, guessed)."""

    sources: dict[int, Predicate]
    limits: set[int]
    unmapped: list[int]
    types: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    provenance: list[list[str]] = field(default_factory=list)
    how: dict[int, str] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    type_match: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)   # constants given back to the text, and their source

    def evidence(self) -> dict:
        """What the evidence records about the values (never the observed values themselves)."""
        counts: dict[str, int] = defaultdict(int)
        for row in self.provenance:
            for source in row:
                counts[source] += 1
        return {"sources": self.provenance, "source_counts": dict(counts), "types": {str(k): v for k, v in
                                                                                      sorted(self.types.items())},
                "how": {f"${k}": v for k, v in sorted(self.how.items())}, "problems": self.problems,
                "calibration": self.calibration, **({"type_match": self.type_match} if self.type_match else {}),
                **({"constants": self.constants} if self.constants else {})}

    @property
    def observed(self) -> bool:
        return any(OBSERVED in row for row in self.provenance)

    def shown_plan(self, plan: dict | None, show_observed: bool = False) -> dict | None:
        """A compact plan as evidence may show it: with observed values, the literals in its
        conditions are replaced (pg_stat_statements turned every constant of the statement into a
        `$n`, so every literal there is a bound value)."""
        if plan is None or show_observed or not self.observed:
            return plan
        return _redact(plan)

    def shown(self, sets: Sequence[Sequence[str]], show_observed: bool = False) -> list[list[str]]:
        """The parameter sets as evidence may show them: observed values replaced by a marker unless
        the user opted in (they can be personal data)."""
        out = []
        for k, values in enumerate(sets):
            sources = self.provenance[k] if k < len(self.provenance) else []
            out.append([REDACTED if (not show_observed and k < len(self.provenance)
                                     and i < len(sources) and sources[i] == OBSERVED) else v
                        for i, v in enumerate(values)])
        return out


_QUOTED = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.$])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])", re.I)
_CONDITIONS = ("Filter", "Index Cond", "Recheck Cond", "Join Filter", "Hash Cond", "Merge Cond", "One-Time Filter")


def _redact(node):
    if isinstance(node, list):
        return [_redact(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _CONDITIONS and isinstance(value, str):
            value = _NUMBER.sub(REDACTED, _QUOTED.sub(f"'{REDACTED}'", value))
        out[key] = _redact(value) if isinstance(value, (dict, list)) else value
    return out


def plan_parameters(shape: QueryShape) -> ParameterPlan:
    sources: dict[int, Predicate] = {}
    for pred in shape.predicates:
        for p in pred.params:
            sources.setdefault(p, pred)
    limits = set(shape.limit_params)
    unmapped = [n for n in range(1, shape.param_count + 1) if n not in sources and n not in limits]
    return ParameterPlan(sources, limits, unmapped)


def parameter_types(conn: psycopg.Connection, query: str) -> dict[int, str]:
    """The types PostgreSQL infers for the statement's `$n` (from a prepared statement, deallocated)."""
    types, _error = _inferred_types(conn, query)
    return types


def _inferred_types(conn: psycopg.Connection, query: str) -> tuple[dict[int, str], str | None]:
    types, exc = _prepared_types(conn, query, None)
    return types, (_first_line(exc) if exc is not None else None)


PREPARED_NAME = "dbarch_param_types"


def _prepared_types(conn: psycopg.Connection, query: str, declared: Sequence[str] | None
                    ) -> tuple[dict[int, str], psycopg.Error | None]:
    """The types PostgreSQL gives the `$n` of a statement prepared with `declared` types (`unknown`
    lets it infer one), or the error it raised."""
    head = sql.SQL(tag("PREPARE {} ")).format(sql.Identifier(PREPARED_NAME))
    if declared:
        head += sql.SQL("({}) ").format(sql.SQL(", ").join(sql.SQL(t) for t in declared))
    try:
        with conn.transaction():
            conn.execute(head + sql.SQL("AS ") + sql.SQL(query))
            row = conn.execute("SELECT parameter_types::regtype[]::text[] FROM pg_prepared_statements "
                               "WHERE name = %s", (PREPARED_NAME,)).fetchone()
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(PREPARED_NAME)))
    except psycopg.Error as exc:
        return {}, exc
    return {i + 1: t.strip('"') for i, t in enumerate(row[0] if row else [])}, None


# -- $n that stand for the application's literals -----------------------------------------------------

# operator or function is not unique (`unknown * unknown`); could not determine the type of `$n`
UNTYPED = {"42725", "42P18"}
# how PostgreSQL types a literal: an integer, a number with a point, a quoted string
LITERAL_TYPES = ("integer", "numeric", "text")
NEAREST_TRIED = 6      # `$n` tried per problem, nearest first: a long IN list costs a few PREPAREs, not n^2


def _param_tokens(query: str) -> list[tuple[int, int, int]]:
    """(n, start, end) of each `$n` in the text (character offsets, end exclusive), strings and
    comments aside."""
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import TokenType

    try:
        tokens = Postgres().tokenize(query)
    except SqlglotError:
        return []
    out = []
    for a, b in zip(tokens, tokens[1:]):
        if a.token_type == TokenType.PARAMETER and b.token_type == TokenType.NUMBER and a.end + 1 == b.start:
            out.append((int(b.text), a.start, b.end + 1))
    return out


def literal_types(conn: psycopg.Connection, query: str) -> dict[int, str]:
    """Types for the `$n` PostgreSQL cannot type by itself, as it would have typed the literals they
    stand for, or {} when every `$n` is typed (or none of these tries helps).

    pg_stat_statements replaces every constant with a `$n`: `price BETWEEN $1 * 100 AND ...` becomes
    `$1 * $3`, which PostgreSQL cannot resolve (`operator is not unique: unknown * unknown`) although
    the application's statement, with its literal, was fine. The `$n` nearest where PostgreSQL
    reports the problem is given the type of an integer literal, else a numeric one, else a string,
    the first one that resolves it (the statement prepares, or the problem moves on to another
    place); then the next problem. The constants pg_stat_statements made are numbered after the
    application's own parameters, so at the same distance the higher `$n` is typed first."""
    params = _param_tokens(query)
    count = max((n for n, _s, _e in params), default=0)
    if not count:
        return {}
    declared = ["unknown"] * count
    _types, exc = _prepared_types(conn, query, declared)
    if exc is None or exc.sqlstate not in UNTYPED:
        return {}
    for _round in range(count):
        where = _error_offset(conn, exc, declared)
        named_param = re.search(r"parameter \$(\d+)", exc.diag.message_primary or "")
        first = int(named_param.group(1)) if named_param else None
        order = sorted({n for n, _s, _e in params if declared[n - 1] == "unknown"},
                       key=lambda n: (n != first, min(abs(s - (where or 0)) for m, s, _e in params if m == n), -n))
        moved = False
        for n in order[:NEAREST_TRIED]:
            for type_name in LITERAL_TYPES:
                trial = list(declared)
                trial[n - 1] = type_name
                _types, error = _prepared_types(conn, query, trial)
                if error is None:
                    return {i + 1: t for i, t in enumerate(trial) if t != "unknown"}
                if error.sqlstate in UNTYPED and ((_error_offset(conn, error, trial), error.diag.message_primary)
                                                  != (where, exc.diag.message_primary)):
                    declared, exc, moved = trial, error, True
                    break
            if moved:
                break
        if not moved:
            return {}
    return {}


def _error_offset(conn: psycopg.Connection, exc: psycopg.Error, declared: Sequence[str]) -> int | None:
    """Where in the statement (0-based) PostgreSQL reports the problem, the PREPARE before it aside."""
    position = exc.diag.statement_position
    if not position:
        return None
    head = sql.SQL(tag("PREPARE {} ")).format(sql.Identifier(PREPARED_NAME)).as_string(conn)
    head += ("(" + ", ".join(declared) + ") " if declared else "") + "AS "
    return int(position) - 1 - len(head)


def typed_statement(conn: psycopg.Connection, query: str) -> str:
    """The statement with a cast on each `$n` PostgreSQL cannot type by itself (`literal_types`), so
    that it prepares, plans and binds values like the application's statement did; the text as it
    was when nothing is missing."""
    types = literal_types(conn, query)
    if not types:
        return query
    out, pos = [], 0
    for n, _start, end in _param_tokens(query):
        if n in types:
            out.append(query[pos:end] + "::" + types[n])
            pos = end
    out.append(query[pos:])
    return "".join(out)


# -- the types the application's driver bound ------------------------------------------------------

# Types a driver may bind for a `$n` PostgreSQL infers as the key (psycopg sends a small Python int
# as smallint and a float as double precision; JDBC a String as varchar), most likely first.
SIBLINGS = {
    **{t: ["smallint", "integer", "bigint", "numeric", "double precision", "real"] for t in INTEGER_TYPES},
    **{t: ["double precision", "numeric", "smallint", "integer", "bigint", "real"] for t in NUMERIC_TYPES - INTEGER_TYPES},
    "text": ["text", "character varying"], "character varying": ["character varying", "text"],
    "character": ["character", "text", "character varying"],
    "timestamp with time zone": ["timestamp with time zone", "timestamp without time zone", "date"],
    "timestamp without time zone": ["timestamp without time zone", "timestamp with time zone", "date"],
    "date": ["date", "timestamp without time zone", "timestamp with time zone"],
    "jsonb": ["jsonb", "json", "text"], "json": ["json", "jsonb", "text"],
}
_CAST_NAME = {"character": "bpchar"}   # `::character` would mean char(1)
MATCH_TRIES = 256        # EXPLAINs per statement at most (planning only, ~1 ms each)
_LITERAL = "literal"     # the `$n` was one of the application's constants


@dataclass(frozen=True)
class TypeMatch:
    """How the `$n` of a statement were typed: by what PostgreSQL infers for the text, or by the
    types whose query identifier equals the application's (pg_stat_statements' queryid)."""

    text: str
    types: dict[int, str]
    status: str          # matched (inferred types already match), adopted, unmatched, unchecked
    tried: int = 0
    note: str = ""

    def evidence(self) -> dict:
        return {"status": self.status, "types": {f"${n}": t for n, t in sorted(self.types.items())},
                "explains": self.tried, "note": self.note}


def query_identifier(conn: psycopg.Connection, query: str) -> int | None:
    """The query identifier PostgreSQL computes for the statement (EXPLAIN VERBOSE of its generic
    plan: nothing runs, and what planning folds runs read-only), or None (it does not parse, or the
    server computes no identifier)."""
    try:
        with read_only_section(conn):
            row = conn.execute(sql.SQL(tag("EXPLAIN (VERBOSE, GENERIC_PLAN, FORMAT JSON) ")) + sql.SQL(query)
                               ).fetchone()
    except psycopg.Error:
        return None
    plan = row[0] if row else None
    if isinstance(plan, str):
        plan = json.loads(plan)
    value = plan[0].get("Query Identifier") if plan else None
    return int(value) if value is not None else None


def _types(type_name: str) -> list[tuple[str, str]]:
    """(how `$n` is cast, the type) for a `$n` PostgreSQL infers as type_name: that type first, then
    the types a driver may have bound instead."""
    names = [type_name] + [t for t in SIBLINGS.get(type_name, []) if t != type_name]
    return [(f"::{_CAST_NAME.get(t, t)}", t) for t in names]


def _literals(type_name: str) -> list[tuple[str, str]]:
    """(a literal, its type) the application may have written where pg_stat_statements shows a `$n`
    PostgreSQL infers as type_name (the identifier ignores the value, not how it was written)."""
    if type_name in INTEGER_TYPES:
        return [("1", "integer")]
    if type_name in NUMERIC_TYPES:
        return [("1", "integer"), ("1.0", "numeric")]
    neutral = NEUTRAL.get(type_name) or ("{}" if type_name.endswith("[]") or type_name in ("json", "jsonb") else None)
    return [("'" + neutral + "'", type_name)] if neutral is not None else []


def _variants(types: list[list[tuple[str, str]]], literals: list[list[tuple[str, str]]], known: int = 0):
    """(L, ranks): the last L `$n` are the application's constants (pg_stat_statements numbers them
    after its own parameters), ranks[i] indexes the casts of `$i+1` (or its literals, when it is one
    of the last L); fewest changes from the inferred types first, the constants counting as one. The
    last `known` `$n` start as constants: PostgreSQL could not type them by themselves."""
    import heapq

    count = len(types)

    def cost(state):
        n_lit, ranks = state
        changes = sum(1 for r in ranks[:count - n_lit] if r) + (1 if n_lit > known else 0)
        return changes, sum(ranks) + (1 if n_lit > known else 0)

    start = (known, tuple(0 for _ in types))
    heap, seen = [(cost(start), start)], {start}
    for _pop in range(MATCH_TRIES * 8):
        if not heap:
            return
        _key, (n_lit, ranks) = heapq.heappop(heap)
        yield n_lit, ranks
        nexts = []
        for i in range(count):
            limit = len(types[i]) if i < count - n_lit else len(literals[i])
            if ranks[i] + 1 < limit:
                nexts.append((n_lit, ranks[:i] + (ranks[i] + 1,) + ranks[i + 1:]))
        k = count - n_lit - 1   # the next `$n` to become a constant, from its inferred type only
        if k >= 0 and ranks[k] == 0 and literals[k]:
            nexts.append((n_lit + 1, ranks))
        for nxt in nexts:
            if nxt not in seen:
                seen.add(nxt)
                heapq.heappush(heap, (cost(nxt), nxt))


def match_types(conn: psycopg.Connection, query: str, queryid: int | None) -> TypeMatch:
    """The statement typed as the application's driver bound it, found by PostgreSQL's query
    identifier.

    The identifier pg_stat_statements keeps (queryid) is a hash of the parsed statement, the types
    of its parameters included: an application that binds a float for `score > $2` sent
    `score > $2::float8`, whose plan cannot use an index on a numeric `score`, while the text, typed
    as PostgreSQL infers it, is `score > $2::numeric`, which can. A cast on a `$n` types the
    parameter itself, so `$2::float8` has the application's identifier. When the inferred types do
    not give the statement's queryid, each `$n` tries its siblings (smallint ... double precision,
    text/varchar, timestamp/timestamptz/date) and, for the constants pg_stat_statements made, a
    literal; at most MATCH_TRIES EXPLAINs, fewest changes first. Without a match the inferred types
    stay (`typed_statement`), and the evidence says so."""
    base = typed_statement(conn, query)
    params = _param_tokens(query)
    count = max((n for n, _s, _e in params), default=0)
    if queryid is None or not count:
        return TypeMatch(base, {}, "unchecked", 0, "no queryid to match" if count else "no parameters")
    forced = literal_types(conn, query)
    inferred, exc = _prepared_types(conn, base, None)
    if exc is not None or len(inferred) < count:
        return TypeMatch(base, {}, "unmatched", 0, "PostgreSQL cannot prepare the statement, so its types "
                                                   "stay as inferred")
    inferred = {n: forced.get(n, t) for n, t in inferred.items()}
    first = query_identifier(conn, base)
    if first is None:
        return TypeMatch(base, inferred, "unchecked", 1, "the server gives no query identifier "
                                                         "(compute_query_id is off)")
    if first == queryid:
        return TypeMatch(base, inferred, "matched", 1, "the inferred types give the application's queryid")
    types = [_types(inferred[n]) for n in range(1, count + 1)]
    literals = [_literals(inferred[n]) for n in range(1, count + 1)]
    # the `$n` PostgreSQL cannot type by itself are the application's constants (literal_types)
    known = count - min(forced) + 1 if forced and all(literals[n - 1] for n in range(min(forced), count + 1)) else 0
    tried = 1
    for n_lit, ranks in _variants(types, literals, known):
        if not n_lit and not any(ranks):
            continue
        if tried >= MATCH_TRIES:
            break
        chosen = [types[i][r] if i < count - n_lit else literals[i][r] for i, r in enumerate(ranks)]
        tried += 1
        if query_identifier(conn, _written(query, params, [w for w, _t in chosen])) != queryid:
            continue
        adopted = {i + 1: t for i, (_w, t) in enumerate(chosen)}
        changed = ", ".join(f"${i + 1} {inferred[i + 1]} -> " + (f"a literal ({t})" if i >= count - n_lit else t)
                            for i, (_w, t) in enumerate(chosen) if ranks[i] or i >= count - n_lit)
        text = _written(query, params, [f"::{_CAST_NAME.get(t, t)}" for t in adopted.values()])
        return TypeMatch(text, adopted, "adopted", tried,
                         f"types matched to the application's queryid ({changed})")
    return TypeMatch(base, inferred, "unmatched", tried,
                     f"no combination of parameter types tried ({tried} EXPLAINs) gives the application's "
                     "queryid: the inferred types were used")


def _written(query: str, params: list[tuple[int, int, int]], how: list[str]) -> str:
    """The text with each `$n` cast (`::type`) or replaced by a literal as `how[n-1]` says."""
    out, pos = [], 0
    for n, start, end in params:
        w = how[n - 1]
        out.append(query[pos:start] + (query[start:end] + w if w.startswith("::") else w))
        pos = end
    out.append(query[pos:])
    return "".join(out)


def _in_expressions(query: str) -> dict[int, str]:
    """`$n` -> the SQL of the expression over a table's columns it sits in, for every `$n` inside
    the column side of a comparison (`substr(code, $2, $3) = $1`: $2 and $3)."""
    try:
        tree = parse(query)
    except UnparseableQuery:
        return {}
    out: dict[int, str] = {}
    for param in tree.find_all(exp.Parameter):
        n = _param_index(param)
        node, child = param.parent, param
        while node is not None and not isinstance(node, (*COMPARISONS, exp.Between, exp.In, exp.Like, exp.ILike,
                                                          *GIN, exp.Where, exp.Select)):
            node, child = node.parent, node
        if n is not None and node is not None and not isinstance(node, (exp.Where, exp.Select)) \
                and any(True for _ in child.find_all(exp.Column)):
            out.setdefault(n, child.sql(dialect="postgres"))
    return out


def hidden_literals(query: str) -> str | None:
    """Why an expression of the statement cannot get an index without the server log, or None:
    it holds `$n` that pg_stat_statements made of the application's literals."""
    found = _in_expressions(query)
    if not found:
        return None
    by_expression: dict[str, list[int]] = defaultdict(list)
    for n, text in sorted(found.items()):
        by_expression[text].append(n)
    text, params = next(iter(by_expression.items()))
    names = ", ".join(f"${n}" for n in params)
    return (f"{text} holds {names}, which pg_stat_statements put in place of the application's constants: an "
            "index on it needs their values, which only the application's own text holds: the server log "
            "(log_min_duration_statement) or a sample of pg_stat_activity while it runs (the activity_sampler "
            "sensor, `dbarch sample-activity`)")


LOG_SOURCE, SAMPLE_SOURCE = "server log", "activity sample"


@dataclass(frozen=True)
class SampledText:
    """One text of the statement as the application sent it (pg_stat_activity), lined up with
    pg_stat_statements' `$n`: the values of those that stand for its literals. `bound`: the text
    also holds bound parameters (`$1`), so its literals are constants written in the application's
    SQL, not values it passes on each call."""

    values: dict[int, str]
    bound: bool


@dataclass(frozen=True)
class Inlined:
    """A statement with the application's constants back in its text (recover_constants): the text,
    the observed sets for the `$n` left (renumbered), the constants given back and where the
    application's text came from (the server log, an activity sample, or both)."""

    text: str
    sets: list[tuple[str | None, ...]] | None
    constants: dict[int, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def evidence(self, show_values: bool = False) -> dict:
        """What the evidence records (the values only when the user opted in: they are the
        application's text, which can hold personal data)."""
        if not self.constants:
            return {}
        return {"source": " and ".join(self.sources),
                "params": {f"${n}": (v if show_values else REDACTED) for n, v in sorted(self.constants.items())}}


def inline_constants(conn: psycopg.Connection, query: str, observed: Sequence[Sequence[str | None]] | None
                     ) -> tuple[str, list[tuple[str | None, ...]] | None]:
    """`recover_constants` with the server log's sets alone: (the text, the observed sets left)."""
    done = recover_constants(conn, query, observed)
    return done.text, done.sets


def recover_constants(conn: psycopg.Connection, query: str, observed: Sequence[Sequence[str | None]] | None,
                      sampled: Sequence[SampledText] | None = None) -> Inlined:
    """The statement with the application's literals back in its indexable expressions, and the
    observed sets for the `$n` left (renumbered).

    pg_stat_statements turns `substr(code, 1, 8) = $1` into `substr(code, $2, $3) = $1`: no index
    can be built on an expression holding parameters. The application's own text holds the
    literals: the server log keeps it (`observed`: each logged set lined up with the `$n`), and so
    does pg_stat_activity while the statement runs (`sampled`: per sampled text, the `$n` that stand
    for its literals, bench/activity.py). When every set and every sampled text that knows such a
    `$n` (one inside an expression over a table's columns) agrees on one value, it goes back into
    the text, typed as PostgreSQL inferred it.

    A sampled text that also holds bound parameters tells more: its literals were written in the
    application's SQL, not passed on each call, so any `$n` every sampled text knows and agrees on
    (a `LIMIT 10`, a `status = 'open'` a partial index can hold, the `100` of `$1 * 100`) goes back
    too, provided every sampled text holds bound parameters (a simple-protocol text's literals may be
    the call's values) and no logged set disagrees. With neither source, the text is left as it is."""
    sampled = [s for s in sampled or [] if s.values]
    if not observed and not sampled:
        return Inlined(query, list(observed) if observed is not None else None)
    inside = set(_in_expressions(query))
    count = max((n for n, _s, _e in _param_tokens(query)), default=0)
    sets = [tuple(v) for v in observed or [] if len(v) == count]
    # the application's own constants: every sampled text has bound parameters and knows them
    written = set.intersection(*(set(s.values) for s in sampled)) if sampled and all(s.bound for s in sampled) \
        else set()
    constants: dict[int, str] = {}
    sources: set[str] = set()
    for n in sorted(inside | written):
        logged = [v[n - 1] for v in sets]
        seen = [s.values[n] for s in sampled if n in s.values]
        values = logged + seen
        if values and values[0] is not None and all(v == values[0] for v in values):
            constants[n] = values[0]
            sources |= ({LOG_SOURCE} if logged else set()) | ({SAMPLE_SOURCE} if seen else set())
    if not constants:
        return Inlined(query, list(observed) if observed is not None else None)
    types = parameter_types(conn, query)
    kept = [n for n in range(1, count + 1) if n not in constants]
    number = {old: new for new, old in enumerate(kept, 1)}
    out, pos = [], 0
    for n, start, end in _param_tokens(query):
        out.append(query[pos:start])
        if n in constants:
            literal = "'" + constants[n].replace("'", "''") + "'"
            out.append(f"{literal}::{types[n]}" if types.get(n) else literal)
        else:
            out.append(f"${number[n]}")
        pos = end
    out.append(query[pos:])
    return Inlined("".join(out), [tuple(v[n - 1] for n in kept) for v in sets] if observed is not None else None,
                   constants, tuple(s for s in (LOG_SOURCE, SAMPLE_SOURCE) if s in sources))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- where each $n sits ------------------------------------------------------------------------------

@dataclass
class Slot:
    """One `$n` in a comparison: `column_sql` is the other side (over one table's columns, evaluated
    on sampled rows), `value_sql` the side holding `$n` with `$n` written as `$1` when it is an
    expression to solve (None when `$n` is the value itself, possibly cast)."""

    n: int
    op: str                     # eq | in | range | like | contains | key | overlap
    operator: str               # =, <, >=, BETWEEN, LIKE ...; the column on the left
    table: str
    schema: str
    column_sql: str
    plain_column: str | None    # the column's name when the other side is a bare column
    value_sql: str | None
    position: int = 0           # BETWEEN: 0 low, 1 high; IN lists: the item's place
    lowered: str | None = None  # lower / upper applied to both sides


def _scope_aliases(node: exp.Expression) -> dict[str, tuple[str, str]]:
    """alias -> (schema, table) for the tables in the FROM / JOIN of the scope holding `node`."""
    scope = node.find_ancestor(exp.Select, exp.Update, exp.Delete)
    out: dict[str, tuple[str, str]] = {}
    if scope is None:
        return out
    for table in scope.find_all(exp.Table):
        if table.find_ancestor(exp.Select, exp.Update, exp.Delete) is not scope or not table.name:
            continue
        out[table.alias_or_name] = (table.db or "", table.name)
        out.setdefault(table.name, (table.db or "", table.name))
    return out


def _columns_side(node: exp.Expression, aliases: dict[str, tuple[str, str]],
                  columns: dict[str, set[str]]) -> tuple[str, str, str, str | None] | None:
    """(schema, table, SQL over that table's bare columns, plain column name) for a side of a
    comparison that reads exactly one table, else None."""
    cols = list(node.find_all(exp.Column))
    if not cols or any(True for _ in node.find_all(exp.Select, exp.Parameter)):
        return None
    tables = set()
    for col in cols:
        if col.table:
            if col.table not in aliases:
                return None
            tables.add(aliases[col.table])
        else:
            owners = {v for v in aliases.values() if len(set(aliases.values())) == 1
                      or col.name in columns.get(v[1], set())}
            if len(owners) != 1:
                return None
            tables |= owners
    if len(tables) != 1:
        return None
    schema, table = tables.pop()
    bare = node.copy().transform(lambda n: exp.column(n.name, quoted=True) if isinstance(n, exp.Column) else n)
    inner = node
    while isinstance(inner, TRANSPARENT):
        inner = inner.this
    plain = inner.name if isinstance(inner, exp.Column) else None
    return schema, table, bare.sql(dialect="postgres"), plain


CONSTANT = "dbarch_param_{}"   # another `$k` in an expression solved for `$n`, replaced by its value


def _value_side(node: exp.Expression, n: int) -> str | None:
    """The side holding `$n` as SQL with `$n` renamed `$1`, or None when it is `$n` itself (cast or
    not). Any other `$k` in the same expression (a constant pg_stat_statements turned into a
    parameter: `$1 * $3`) is written `dbarch_param_k`, replaced by that constant's value before the
    expression is solved."""
    inner = node
    while isinstance(inner, TRANSPARENT):
        inner = inner.this
    if isinstance(inner, exp.Parameter):
        return None

    def rename(x: exp.Expression) -> exp.Expression:
        if not isinstance(x, exp.Parameter):
            return x
        k = _param_index(x)
        return exp.Parameter(this=exp.Literal.number(1)) if k == n else exp.var(CONSTANT.format(k))

    return node.copy().transform(rename).sql(dialect="postgres")


def _others(node: exp.Expression, n: int) -> list[int]:
    """The other `$k` in the side of a comparison that holds `$n`."""
    return sorted({k for k in (_param_index(p) for p in node.find_all(exp.Parameter)) if k is not None and k != n})


def _lowered(column_side: exp.Expression, value_side: exp.Expression) -> str | None:
    for cls, name in ((exp.Lower, "lower"), (exp.Upper, "upper")):
        if isinstance(column_side, cls) and isinstance(value_side, cls):
            return name
    return None


def find_slots(query: str, columns: dict[str, set[str]] | None = None) -> dict[int, Slot]:
    """Each `$n` that sits in a comparison with one table's columns, and how."""
    try:
        tree = parse(query)
    except UnparseableQuery:
        return {}
    columns = columns or {}
    slots: dict[int, Slot] = {}
    for param in tree.find_all(exp.Parameter):
        n = _param_index(param)
        if n is None or n in slots:
            continue
        node, child = param.parent, param
        while node is not None and not isinstance(node, (*COMPARISONS, exp.Between, exp.In, exp.Like, exp.ILike,
                                                          *GIN, exp.Where, exp.Select, exp.Limit, exp.Offset)):
            node, child = node.parent, node
        if node is None or isinstance(node, (exp.Where, exp.Select, exp.Limit, exp.Offset)):
            continue
        if any(k < n for k in _others(child, n)):
            # several `$n` on one side: the application's own parameter is the lowest (the constants
            # pg_stat_statements made of its literals are numbered after it); the others keep a
            # constant's neutral value
            continue
        slot = _slot(node, child, n, _scope_aliases(node), columns)
        if slot is not None:
            slots[n] = slot
    return slots


def _slot(node: exp.Expression, child: exp.Expression, n: int, aliases: dict, columns: dict) -> Slot | None:
    if isinstance(node, exp.Between):
        side = _columns_side(node.this, aliases, columns)
        position = 0 if child is node.args.get("low") else 1
        if side is None or child is node.this:
            return None
        return Slot(n, "range", "BETWEEN", side[1], side[0], side[2], side[3], _value_side(child, n), position)
    if isinstance(node, exp.In):
        side = _columns_side(node.this, aliases, columns)
        if side is None or child is node.this:
            return None
        unnest = node.args.get("unnest") is not None
        position = next((i for i, e in enumerate(node.expressions) if e is child), 0)
        return Slot(n, "in", "= ANY" if unnest else "IN", side[1], side[0], side[2], side[3],
                    _value_side(child, n) if not unnest else None, position)
    left, right = node.this, node.expression
    if child is left:
        column_node, value_node, flipped = right, left, True
    else:
        column_node, value_node, flipped = left, right, False
    if isinstance(value_node, exp.Any):   # col = ANY($1)
        side = _columns_side(column_node, aliases, columns)
        return Slot(n, "in", "= ANY", side[1], side[0], side[2], side[3], None) if side else None
    side = _columns_side(column_node, aliases, columns)
    if side is None:
        return None
    lowered = _lowered(column_node, value_node)
    value_sql = None if lowered else _value_side(value_node, n)
    if isinstance(node, (exp.Like, exp.ILike)):
        return Slot(n, "like", "ILIKE" if isinstance(node, exp.ILike) else "LIKE", side[1], side[0], side[2],
                    side[3], None, lowered=lowered)
    for cls, op in GIN.items():
        if isinstance(node, cls):
            return Slot(n, op, op, side[1], side[0], side[2], side[3], None) if not flipped else None
    symbol = COMPARISONS[type(node)]
    symbol = FLIPPED[symbol] if flipped else symbol
    op = "eq" if symbol in ("=", "<>") else "range"
    return Slot(n, op, symbol, side[1], side[0], side[2], side[3], value_sql, lowered=lowered)


# -- sampling the other side ---------------------------------------------------------------------------

@dataclass
class Column:
    """Sampled values of one slot's other side, with the column's statistics when it is a column."""

    values: list[str]
    type: str
    mcv: list[str] = field(default_factory=list)
    mcv_freqs: list[float] = field(default_factory=list)
    bounds: list[str] = field(default_factory=list)   # ascending; quantiles come from here
    numbers: list[float] = field(default_factory=list)  # the bounds as numbers, when the type has them
    _key_shares: list[tuple[float, str]] | None = None
    keys_counted: bool = False   # key shares counted by PostgreSQL over a large sample (_jsonb_key_shares)

    def key_shares(self) -> list[tuple[float, str]]:
        """(share of the sampled documents holding the key, key) for every top-level key of the
        sampled jsonb values, rarest first."""
        if self._key_shares is None:
            counts: dict[str, int] = defaultdict(int)
            docs = 0
            for value in self.values:
                try:
                    doc = json.loads(value)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    docs += 1
                    for key in doc:
                        counts[key] += 1
            self._key_shares = sorted((n / docs, key) for key, n in counts.items()) if docs else []
        return self._key_shares

    def quantile(self, q: float) -> str:
        """The value below which a share q of the rows lies: interpolated between histogram bounds
        for numbers and times (a window finer than one bucket), the nearest bound otherwise."""
        ordered = self.bounds or self.values
        pos = min(1.0, max(0.0, q)) * (len(ordered) - 1)
        if self.numbers and len(self.numbers) == len(ordered) and len(ordered) > 1:
            i = min(int(pos), len(ordered) - 2)
            x = self.numbers[i] + (pos - i) * (self.numbers[i + 1] - self.numbers[i])
            return _param_text(x, self.type)
        return ordered[round(pos)]


def _sample(conn: psycopg.Connection, schema: str, table: str, expressions: list[str], reltuples: int,
            n: int, seed: int) -> tuple[list[tuple[str, ...]], list[str]]:
    """About n rows of the expressions (all non-null), as text, via TABLESAMPLE (cheap on big
    tables), and the expressions' types."""
    cols = sql.SQL(", ").join(sql.SQL("({})::text").format(sql.SQL(e)) for e in expressions)
    types = sql.SQL(", ").join(sql.SQL("pg_typeof({})::text").format(sql.SQL(e)) for e in expressions)
    not_null = sql.SQL(" AND ").join(sql.SQL("({}) IS NOT NULL").format(sql.SQL(e)) for e in expressions)
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    pct = min(100.0, max(0.01, 100.0 * (n * 40) / max(reltuples, 1)))
    query = sql.SQL(tag("SELECT {cols}, {types} FROM {target} TABLESAMPLE SYSTEM ({pct}) REPEATABLE ({seed}) "
                        "WHERE {not_null} LIMIT {limit}")).format(
        cols=cols, types=types, target=target, pct=sql.Literal(pct), seed=sql.Literal(seed), not_null=not_null,
        limit=sql.Literal(n * 40))
    rows = conn.execute(query).fetchall()
    if len(rows) < n:
        # small or freshly loaded tables: TABLESAMPLE may return too few pages
        query = sql.SQL(tag("SELECT {cols}, {types} FROM {target} WHERE {not_null} LIMIT {limit}")).format(
            cols=cols, types=types, target=target, not_null=not_null, limit=sql.Literal(n * 40))
        rows = conn.execute(query).fetchall()
    width = len(expressions)
    found_types = list(rows[0][width:]) if rows else []
    rows = [r[:width] for r in rows]
    random.Random(seed).shuffle(rows)
    return rows, found_types


KEY_SAMPLE_DOCUMENTS = 10_000   # documents read for jsonb key shares: a key held by 0.1% shows ~10 times


def _jsonb_key_shares(conn: psycopg.Connection, schema: str, table: str, expression: str, reltuples: int,
                      seed: int) -> list[tuple[float, str]]:
    """(share of the documents holding the key, key) for every top-level key of a jsonb expression,
    rarest first, counted by PostgreSQL (jsonb_object_keys) over a sample of up to
    KEY_SAMPLE_DOCUMENTS documents: the few rows values are drawn from would miss a key that one
    row in a few hundred holds, the kind `? $1` is usually asked for."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    pct = min(100.0, max(0.01, 100.0 * 2 * KEY_SAMPLE_DOCUMENTS / max(reltuples, 1)))
    query = sql.SQL(tag(
        "WITH docs AS (SELECT ({expr}) AS d FROM {target} TABLESAMPLE SYSTEM ({pct}) REPEATABLE ({seed}) "
        "WHERE jsonb_typeof({expr}) = 'object' LIMIT {limit}) "
        "SELECT count(*)::float8 / (SELECT greatest(count(*), 1) FROM docs), k "
        "FROM docs, jsonb_object_keys(docs.d) AS k GROUP BY k ORDER BY 1, 2")).format(
        expr=sql.SQL(expression), target=target, pct=sql.Literal(pct), seed=sql.Literal(seed),
        limit=sql.Literal(KEY_SAMPLE_DOCUMENTS))
    return [(float(share), key) for share, key in conn.execute(query).fetchall()]


def _sample_rows(conn: psycopg.Connection, schema: str, table: str, columns: list[str], reltuples: int,
                 n: int, seed: int) -> list[tuple[str, ...]]:
    """About n rows of plain columns, as text (the sampling every value starts from)."""
    # a column, or an expression the plan showed (md5(val)): its values are what `$n` is compared with
    rows, _types = _sample(conn, schema, table, [key_sql(c).as_string(conn) for c in columns], reltuples,
                           n, seed)
    return rows[:n]


def _stats(conn: psycopg.Connection, schema: str, table: str, column: str
           ) -> tuple[list[str], list[float], list[str]]:
    """(most common values, their frequencies, histogram bounds) as text, from pg_stats."""
    row = conn.execute(
        tag("SELECT most_common_vals::text::text[], most_common_freqs, histogram_bounds::text::text[] "
            "FROM pg_stats WHERE schemaname = %s AND tablename = %s AND attname = %s"),
        (schema, table, column),
    ).fetchone()
    if row is None:
        return [], [], []
    return list(row[0] or []), list(row[1] or []), list(row[2] or [])


# -- values at a level ----------------------------------------------------------------------------------

def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _apply_case(value: str, lowered: str | None) -> str:
    return value.lower() if lowered == "lower" else value.upper() if lowered == "upper" else value


def _level_value(slot: Slot, col: Column, k: int, t: float, paired: bool, seed: int,
                 avoid_common: bool) -> tuple[str, str]:
    """(value of the other side the slot should meet, how it was derived) for parameter set k at
    level t."""
    pick = col.values[k % len(col.values)]
    where = slot.plain_column or slot.column_sql
    if slot.op == "in" and slot.operator == "= ANY":
        items = col.values[k * 3:k * 3 + 3] or [pick]
        return "{" + ",".join(_array_item(v) for v in items) + "}", f"values of {where} from sampled rows"
    if slot.op in ("eq", "in"):
        if slot.op == "in" and slot.position > 0:
            return col.values[(k + slot.position * 3) % len(col.values)], f"a value of {where} from a sampled row"
        if k == 0 and col.mcv and not avoid_common:
            # the heaviest lookup the workload can send, unless the calls are known to return fewer rows
            return col.mcv[0], f"the most common value of {where}"
        return pick, f"a value of {where} from a sampled row"
    if slot.op == "like":
        length = max(1, math.ceil(len(pick) * (1.0 - t)))
        return _like_escape(pick[:length]) + "%", f"a {length}-character prefix of a sampled {where}"
    if slot.op == "key" and col.key_shares():
        # the key held by about the share t of the rows (a key every row holds finds every row)
        shares = col.key_shares()
        nearest = sorted(shares, key=lambda s: (abs(math.log(max(s[0], 1e-9) / max(t, 1e-9))), s[1]))
        close = [s for s in nearest if abs(math.log(s[0] / nearest[0][0])) < 0.7] or nearest[:1]
        share, key = close[k % len(close)]
        return key, f"a key of {where} held by {share * 100:.3g}% of the sampled rows"
    if slot.op in ("contains", "key", "overlap"):
        return _gin_value(slot.op, pick, k, t), f"taken from a sampled {where}"
    # ranges
    upper = slot.operator in ("<", "<=") or (slot.operator == "BETWEEN" and slot.position == 1)
    if paired or slot.operator == "BETWEEN":
        start = random.Random(f"{seed}:{slot.table}:{slot.column_sql}:{k}").random() * (1.0 - t)
        return col.quantile(start + t if upper else start), f"a window of {where} holding ~{t * 100:.3g}% of the rows"
    q = t if upper else 1.0 - t
    return col.quantile(q), f"the {q * 100:.3g}% quantile of {where}"


def _gin_value(op: str, sampled: str, k: int, t: float = DEFAULT_LEVEL) -> str:
    """A containment document, key or array taken from a sampled jsonb / array value: containment
    keeps fewer keys or items as t grows (more rows match), overlap more items."""
    if sampled.startswith("{") and not sampled.startswith('{"'):  # a PostgreSQL array literal
        items = [i for i in sampled.strip("{}").split(",") if i]
        if not items:
            return "{}"
        count = _count(len(items), t, grows=op == "overlap")
        return "{" + ",".join(items[(k + i) % len(items)] for i in range(count)) + "}"
    try:
        doc = json.loads(sampled)
    except ValueError:
        return sampled
    if isinstance(doc, dict) and doc:
        keys = sorted(doc)
        if op == "key":
            return keys[k % len(keys)]
        count = _count(len(keys), t, grows=False)
        chosen = [keys[(k + i) % len(keys)] for i in range(count)]
        return json.dumps({key: doc[key] for key in sorted(chosen)})
    if isinstance(doc, list) and doc:
        count = _count(len(doc), t, grows=op == "overlap")
        return json.dumps([doc[(k + i) % len(doc)] for i in range(count)])
    return sampled


def _count(total: int, t: float, *, grows: bool) -> int:
    share = t if grows else 1.0 - t
    return max(1, min(total, math.ceil(total * share)))


def _array_item(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _has_level(slot: Slot) -> bool:
    return slot.op in ("like", "range", "contains", "overlap", "key")


# -- solving an expression for $n ------------------------------------------------------------------------

def _number_sql(type_name: str) -> str | None:
    if type_name in NUMERIC_TYPES:
        return "({})::float8"
    if type_name in EPOCH_TYPES:
        return "extract(epoch FROM ({}))::float8"
    return None


def _param_text(x: float, type_name: str) -> str:
    if type_name in INTEGER_TYPES:
        return str(int(round(x)))
    if type_name in NUMERIC_TYPES:
        return repr(float(x))
    if type_name == "interval":
        return f"{x:.6f} seconds"
    moment = datetime.fromtimestamp(x, timezone.utc)
    return moment.date().isoformat() if type_name == "date" else moment.isoformat()


class Unsolvable(ValueError):
    pass


def solve(conn: psycopg.Connection, value_sql: str, param_type: str, target_text: str, target_type: str
          ) -> str:
    """A value of type `param_type` for `$1` such that `value_sql` evaluates to the target value (a
    value of the other side, as text), found with PostgreSQL's own arithmetic: secant steps on the
    numbers behind both sides (epoch seconds for times and intervals)."""
    to_param, to_target = _number_sql(param_type), _number_sql(target_type)
    if to_param is None or to_target is None:
        raise Unsolvable(f"PostgreSQL cannot turn {param_type} or {target_type} into a number to solve for")
    text = value_sql.replace("%", "%%").replace("$1", f"(%s::{param_type})")
    evaluate = sql.SQL(tag("SELECT " + to_target.format(text)))

    def f(x: float) -> float:
        with conn.transaction():
            row = conn.execute(evaluate, (_param_text(x, param_type),)).fetchone()
        if row[0] is None:
            raise Unsolvable("the expression is NULL")
        return float(row[0])

    with conn.transaction():
        goal = conn.execute(sql.SQL(tag("SELECT " + to_target.format(f"%s::{target_type}"))),
                            (target_text,)).fetchone()[0]
    if goal is None:
        raise Unsolvable("the target value is NULL")
    goal = float(goal)
    x0, x1 = 0.0, 86_400.0 if param_type in EPOCH_TYPES else 1000.0
    f0, f1 = f(x0), f(x1)
    tolerance = 1e-6 * max(1.0, abs(goal))
    best = min((x0, f0), (x1, f1), key=lambda p: abs(p[1] - goal))
    for step in range(8):
        if f1 == f0:
            if step == 0:
                raise Unsolvable("the expression does not change with the parameter")
            break   # a step function (round, integer division): as close as its steps allow
        x2 = x1 + (goal - f1) * (x1 - x0) / (f1 - f0)
        if not math.isfinite(x2):
            raise Unsolvable("no finite solution")
        x0, f0, x1 = x1, f1, x2
        f1 = f(x1)
        best = min(best, (x1, f1), key=lambda p: abs(p[1] - goal))
        if abs(f1 - goal) <= tolerance or (param_type in INTEGER_TYPES and abs(x1 - x0) < 1):
            break
    return _param_text(best[0], param_type)


# -- binding checks -------------------------------------------------------------------------------------

def bind_problem(conn: psycopg.Connection, n: int, value: str | None, type_name: str | None) -> str | None:
    """None when `value` binds as the type PostgreSQL inferred for `$n`, else a named reason."""
    if value is None or not type_name:
        return None
    try:
        with conn.transaction():
            conn.execute(sql.SQL(tag("SELECT %s::{}")).format(sql.SQL(type_name)), (value,))
    except psycopg.Error as exc:
        return f"cannot bind ${n} ({type_name}): {_first_line(exc)}"
    return None


# -- the sets -------------------------------------------------------------------------------------------

def sample_parameter_sets(conn: psycopg.Connection, shape: QueryShape, catalog: Catalog, *,
                          n_sets: int = 4, seed: int = 7, fixed: dict[int, str] | None = None,
                          query: str | None = None, target: ValueTarget | None = None,
                          observed: Sequence[Sequence[str | None]] | None = None,
                          timeout_ms: int = 30_000, verdict: Verdict | None = None
                          ) -> tuple[list[tuple[str, ...]], ParameterPlan]:
    """n_sets tuples of text values, one per `$n`, or [] when some parameter cannot be bound (the
    plan's `problems` say why). `fixed` pins parameters to one value (the rare value a partial index
    is built for). With `query` the types PostgreSQL infers are used, expressions around `$n` are
    solved, and values are calibrated against `target`; `observed` sets (from the server log) are
    preferred when they bind.

    Sampling evaluates the statement's own expressions on the table's rows (`tagged(shelf)` of
    `tagged(shelf) = $1`, the documents of `f(doc) ? $1`), so it happens only when the allow-list
    accepts the statement (`verdict`, checked here when not given); a refused statement gets no
    values and is costed by the planner alone."""
    plan = plan_parameters(shape)
    if shape.param_count == 0:
        return [()], plan
    if query:
        plan.types, error = _inferred_types(conn, query)
        if error:
            plan.problems.append(f"PostgreSQL cannot prepare the statement: {error}")
        verdict = verdict if verdict is not None else check_statement(conn, query)
        if not verdict.ok:
            plan.calibration = {"method": None, "why": "values not sampled: sampling would evaluate the "
                                f"statement's expressions, which the allow-list refuses ({verdict.reason})"}
            return [], plan
    seen: list[tuple[str, ...]] = []
    if observed:
        seen = _observed_sets(conn, plan, shape.param_count, observed, n_sets, fixed)
        if len(seen) >= n_sets:
            return seen, plan
    # too few observed sets (the server samples the log): the others are calibrated
    seen_plan = (list(plan.provenance), dict(plan.how), dict(plan.calibration))
    slots = find_slots(query, catalog.columns_map(shape.tables, shape.schemas)) if query else {}
    if not slots:   # no text, or a text only the analyzer understood
        slots = _slots_from_shape(shape)
    builder = _Builder(conn, shape, catalog, plan, slots, n_sets - len(seen), seed, fixed or {}, target)
    sets = builder.calibrated(query, timeout_ms) if builder.ready() else []
    if seen:
        plan.provenance = seen_plan[0] + (plan.provenance if sets else [])
        plan.how = {n: (f"{seen_plan[1][n]}; {plan.how[n]}" if sets and n in plan.how else seen_plan[1][n])
                    for n in seen_plan[1]}
        plan.calibration = {**seen_plan[2], **({"others": plan.calibration} if sets else {})}
        return seen + sets, plan
    return sets, plan


def _slots_from_shape(shape: QueryShape) -> dict[int, Slot]:
    """Without the statement's text (callers that only hold a shape): the analyzer's predicates."""
    slots = {}
    for pred in shape.predicates:
        column = pred.column
        lowered = None
        if pred.is_expression and column.endswith(")") and column.split("(")[0] in ("lower", "upper"):
            lowered = column.split("(")[0]
            column = column[column.index("(") + 1:-1]
        for i, n in enumerate(pred.params):
            slots.setdefault(n, Slot(n, pred.op, pred.operator, pred.table, shape.schemas.get(pred.table, ""),
                                     sql.Identifier(column).as_string(None), column, None, i, lowered))
    return slots


def _observed_sets(conn: psycopg.Connection, plan: ParameterPlan, count: int,
                   observed: Sequence[Sequence[str | None]], n_sets: int, fixed: dict[int, str] | None
                   ) -> list[tuple[str, ...]]:
    """Up to n_sets distinct observed sets that bind. The kept sample is bounded and recent; within it
    the sets are taken in the order of a hash of their values, so a re-run on the same log picks the
    same sets and a new log entry displaces one only when its hash ranks lower."""
    usable: list[tuple[str, ...]] = []
    rejected = 0
    for values in observed:
        if len(values) != count or any(v is None for v in values) or tuple(values) in usable:
            continue
        if any(bind_problem(conn, i + 1, v, plan.types.get(i + 1)) for i, v in enumerate(values)):
            rejected += 1
            continue
        usable.append(tuple(values))
    if rejected:
        plan.problems.append(f"{rejected} observed parameter set(s) did not bind to the inferred types")
    if not usable:
        return []
    chosen = sorted(usable, key=lambda v: hashlib.sha256(json.dumps(v).encode()).hexdigest())[:n_sets]
    sets = []
    for values in chosen:
        values = list(values)
        for n, value in (fixed or {}).items():
            values[n - 1] = value
        sets.append(tuple(values))
    plan.provenance = [[GUESSED if (fixed and n + 1 in fixed) else OBSERVED for n in range(count)] for _ in sets]
    plan.how = {n: "bound by the application (server log)" for n in range(1, count + 1)}
    plan.calibration = {"method": "observed", "observed_sets": len(usable)}
    return sets


class _Builder:
    """Values of every set at a level t, for one statement."""

    def __init__(self, conn, shape, catalog, plan, slots, n_sets, seed, fixed, target):
        self.conn, self.shape, self.catalog, self.plan = conn, shape, catalog, plan
        self.slots: dict[int, Slot] = slots
        self.n_sets, self.seed, self.fixed = n_sets, seed, fixed
        self.target = target or ValueTarget()
        self.columns: dict[tuple[str, str, str], Column] = {}
        self.paired: set[tuple[str, str]] = set()
        self.constants: dict[int, str] = {}

    # which $n are what
    def ready(self) -> bool:
        count = self.shape.param_count
        types = self.plan.types
        limits = set(self.shape.limit_params)
        for n in range(1, count + 1):
            if n in self.fixed:
                continue
            if n in limits and n not in self.slots:
                self.constants[n] = DEFAULT_LIMIT_VALUE
                self.plan.how[n] = "a typical LIMIT / OFFSET"
            elif n not in self.slots:
                value = NEUTRAL.get(types.get(n, ""))
                if value is None:
                    self.plan.problems.append(
                        f"cannot bind ${n} ({types.get(n, 'type unknown')}): it is compared with no column "
                        "and has no neutral value")
                    return False
                self.constants[n] = value
                self.plan.how[n] = f"a neutral {types[n]}"
        by_table: dict[tuple[str, str], list[Slot]] = defaultdict(list)
        for slot in self.slots.values():
            if slot.n not in self.fixed:
                by_table[(slot.schema, slot.table)].append(slot)
        for (schema, table), slots in by_table.items():
            info = self.catalog.table(table, schema)
            if info is None:
                self.plan.problems.append(f"cannot bind ${slots[0].n}: table {table} is not in the catalog")
                return False
            expressions = list(dict.fromkeys(s.column_sql for s in slots))
            try:
                with self.conn.transaction():
                    rows, types = _sample(self.conn, info.schema, info.table, expressions, info.reltuples,
                                          self.n_sets * 3, self.seed)
            except psycopg.Error as exc:
                self.plan.problems.append(f"cannot bind ${slots[0].n}: sampling {table} failed: {_first_line(exc)}")
                return False
            if not rows:
                self.plan.problems.append(f"cannot bind ${slots[0].n}: {table} has no rows with "
                                          f"{', '.join(expressions)} set")
                return False
            for i, expression in enumerate(expressions):
                col = Column([r[i] for r in rows], types[i])
                plain = next((s.plain_column for s in slots if s.column_sql == expression), None)
                if plain:
                    col.mcv, col.mcv_freqs, col.bounds = _stats(self.conn, info.schema, info.table, plain)
                if not col.bounds:
                    col.bounds = _sorted(self.conn, col.values, col.type)
                col.numbers = _numbers(self.conn, col.bounds, col.type)
                if col.type == "jsonb" and any(s.op == "key" for s in slots if s.column_sql == expression):
                    try:
                        with self.conn.transaction():
                            col._key_shares = _jsonb_key_shares(self.conn, info.schema, info.table, expression,
                                                                info.reltuples, self.seed) or None
                            col.keys_counted = col._key_shares is not None
                    except psycopg.Error:
                        pass   # the few sampled documents' keys, as before
                self.columns[(schema, table, expression)] = col
            for slot in slots:
                sides = {s.operator[0] for s in slots if s.column_sql == slot.column_sql and s.op == "range"}
                if {">", "<"} <= sides:
                    self.paired.add((table, slot.column_sql))
        self._avoid_common = self._mcv_too_heavy()
        return True

    def _mcv_too_heavy(self) -> bool:
        """The most common value returns far more rows than the application's calls do. Under a
        LIMIT the calls' rows say only that the filter matched at least that many (a page of 20
        from a parent with 5,000 children reads as 20 rows per call), so they do not rule the
        heaviest lookup out: there it is what tells a sort-free index from a filter-only one."""
        rows = self.target.rows_per_call
        if rows is None or self.shape.has_limit:
            return False
        for slot in self.slots.values():
            col = self.columns.get((slot.schema, slot.table, slot.column_sql))
            if slot.op == "eq" and col and col.mcv_freqs:
                info = self.catalog.table(slot.table, slot.schema)
                if info and col.mcv_freqs[0] * max(info.reltuples, 1) > 10 * max(rows, 1.0):
                    return True
        return False

    def has_level(self) -> bool:
        return any(_has_level(s) for s in self.slots.values() if s.n not in self.fixed)

    def values(self, k: int, t: float) -> tuple[tuple[str, ...] | None, dict[int, str]]:
        """Set k at level t, or None with the problems recorded per `$n`."""
        out: dict[int, str] = {}
        how: dict[int, str] = {}
        problems: dict[int, str] = {}
        for n in range(1, self.shape.param_count + 1):
            if n in self.fixed:
                out[n], how[n] = self.fixed[n], "the value the partial index is built for"
                continue
            if n in self.constants:
                out[n] = self.constants[n]
                continue
            slot = self.slots[n]
            col = self.columns[(slot.schema, slot.table, slot.column_sql)]
            value, how[n] = _level_value(slot, col, k, t, (slot.table, slot.column_sql) in self.paired,
                                         self.seed, self._avoid_common)
            value = _apply_case(value, slot.lowered)
            ptype = self.plan.types.get(n)
            if slot.op == "key" and (ptype or "").endswith("[]") and not value.startswith("{"):
                value = "{" + _array_item(value) + "}"     # ?| and ?& take an array of keys
            if slot.value_sql and ptype and slot.op in ("eq", "range", "in"):
                try:
                    expression = self._with_constants(slot.value_sql)
                    value = solve(self.conn, expression, ptype, value, col.type)
                    how[n] = f"{expression} solved for $1 to meet {how[n]}"
                except (Unsolvable, psycopg.Error) as exc:
                    why = exc if isinstance(exc, Unsolvable) else _first_line(exc)
                    if bind_problem(self.conn, n, value, ptype) is not None:
                        problems[n] = f"cannot bind ${n} ({ptype}): {slot.value_sql} cannot be solved for it ({why})"
                        continue
                    # the other side's own value still binds: timed, but the note says it is a guess
                    how[n] = f"{how[n]}, as is ({slot.value_sql} could not be solved for $1: {why})"
            problem = bind_problem(self.conn, n, value, ptype)
            if problem:
                problems[n] = problem
                continue
            out[n] = value
        if problems:
            return None, problems
        self.plan.how.update(how)
        return tuple(out[n] for n in range(1, self.shape.param_count + 1)), {}

    def _with_constants(self, value_sql: str) -> str:
        """The expression with the other `$k` it holds replaced by their (neutral) values."""
        for k, value in self.constants.items():
            name = CONSTANT.format(k)
            if name in value_sql:
                literal = "'" + value.replace("'", "''") + "'"
                value_sql = re.sub(rf"\b{name}\b", f"{literal}::{self.plan.types.get(k) or 'text'}", value_sql)
        if "dbarch_param_" in value_sql:
            raise Unsolvable("it holds another parameter with a value of its own")
        return value_sql

    def sets_at(self, levels: list[float]) -> list[tuple[str, ...]] | None:
        sets = []
        for k, t in enumerate(levels):
            values, problems = self.values(k, t)
            if values is None:
                for problem in problems.values():
                    if problem not in self.plan.problems:
                        self.plan.problems.append(problem)
                return None
            sets.append(values)
        return sets

    def calibrated(self, query: str | None, timeout_ms: int) -> list[tuple[str, ...]]:
        levels = [DEFAULT_LEVEL] * self.n_sets
        method = None
        rows = self.target.rows_per_call
        if query and self.has_level() and rows is not None:
            found = [self._by_estimate(query, k, rows) for k in range(self.n_sets)]
            known = sorted(f[0] for f in found if f is not None)
            if known:
                # a set whose estimate does not move with the level (the planner's statistics cannot
                # tell its documents or prefixes apart) takes the median level of the others
                median = known[len(known) // 2]
                levels = [f[0] if f is not None else median for f in found]
                method = "estimated rows"
                self.plan.calibration = {"method": method, "target_rows_per_call": round(rows, 3),
                                         "levels": [round(t, 4) for t in levels],
                                         "estimated_rows": [round(f[1], 1) if f else None for f in found]}
        if (method is None and query and self.has_level() and self.target.mean_ms
                and self.shape.is_read_only):
            found = self._by_time(query, self.target.mean_ms, timeout_ms)
            if found is not None:
                levels = [found[0]] * self.n_sets
                method = "time"
                self.plan.calibration = {"method": method, "target_mean_ms": round(self.target.mean_ms, 3),
                                         "level": round(found[0], 4), "probe_ms": round(found[1], 3)}
        if method is None:
            self.plan.calibration = {"method": None, "level": DEFAULT_LEVEL,
                                     "why": "no rows/calls or mean time to calibrate against" if self.has_level()
                                     else "no parameter with a selectivity to tune"}
        sets = self.sets_at(levels)
        if sets is None:
            return []
        self.plan.provenance = [[self._source(n, method) for n in range(1, self.shape.param_count + 1)]
                                for _ in sets]
        return sets

    def _source(self, n: int, method: str | None) -> str:
        slot = self.slots.get(n)
        if slot is None or n in self.fixed:
            return GUESSED
        if (method and _has_level(slot)) or (slot.op == "eq" and self._avoid_common):
            return CALIBRATED
        return GUESSED

    def _estimate(self, query: str, values: tuple[str, ...]) -> float:
        from .measure import plan_once

        with self.conn.transaction():
            doc = plan_once(self.conn, query, [values], has_params=True, param_count=self.shape.param_count)
        return float(doc["Plan"]["Plan Rows"])

    def _counted_keys(self, values: tuple[str, ...]) -> float:
        """The planner's estimate corrected where dbarch counted better: PostgreSQL keeps no
        statistics per jsonb key, so `doc ? $1` is estimated from whole documents, and a key one row
        in a few hundred holds gets a default share. For a key whose share was counted
        (_jsonb_key_shares), the factor counted share / planned share of that clause alone."""
        from .measure import plan_once

        factor = 1.0
        for n, slot in sorted(self.slots.items()):
            col = self.columns.get((slot.schema, slot.table, slot.column_sql))
            if slot.op != "key" or n in self.fixed or col is None or not col.keys_counted:
                continue
            key = values[n - 1]
            share = next((s for s, name in col.key_shares() if name == key), None)
            info = self.catalog.table(slot.table, slot.schema)
            if share is None or info is None or info.reltuples <= 0 or key.startswith("{"):
                continue
            clause = sql.SQL("SELECT 1 FROM {}.{} WHERE ({}) ? $1").format(
                sql.Identifier(info.schema), sql.Identifier(info.table), sql.SQL(slot.column_sql))
            with self.conn.transaction():
                doc = plan_once(self.conn, clause.as_string(self.conn), [(key,)], has_params=True, param_count=1)
            planned = max(float(doc["Plan"]["Plan Rows"]), 1.0) / max(info.reltuples, 1)
            factor *= share / planned
        return factor

    def _by_estimate(self, query: str, k: int, rows: float) -> tuple[float, float] | None:
        """The level whose estimated rows per call come closest to `rows` (bisection on a monotone
        estimate), or None when the estimate does not move with the level (an aggregate)."""
        def est(t: float) -> float | None:
            values, _problems = self.values(k, t)
            if values is None:
                return None
            try:
                return self._estimate(query, values) * self._counted_keys(values)
            except psycopg.Error:
                return None

        lo_est, hi_est = est(0.0), est(1.0)
        if lo_est is None or hi_est is None or hi_est <= lo_est * 1.5:
            return None
        goal = max(rows, 1.0)
        best = min(((0.0, lo_est), (1.0, hi_est)), key=lambda p: abs(math.log(max(p[1], 1.0) / goal)))
        return _bisect(est, goal, CALIBRATION_STEPS, floor=1.0, best=best)

    def _by_time(self, query: str, mean_ms: float, timeout_ms: int) -> tuple[float, float] | None:
        """The level whose first parameter set runs closest to the observed mean time (bisection with
        a few executions, each in a rolled-back transaction under the statement timeout)."""
        from .measure import analyze_once

        def clock(t: float) -> float | None:
            values, _problems = self.values(0, t)
            if values is None:
                return None
            try:
                with rolled_back(self.conn, statement_timeout_ms=timeout_ms, lock_timeout_ms=2_000):
                    started = time.perf_counter()
                    analyze_once(self.conn, query, values)
                    return (time.perf_counter() - started) * 1000
            except psycopg.errors.QueryCanceled:
                return float("inf")
            except psycopg.Error:
                return None

        return _bisect(clock, mean_ms, TIME_STEPS, floor=1e-3)


def _bisect(measure, goal: float, steps: int, *, floor: float, best: tuple[float, float] | None = None
            ) -> tuple[float, float] | None:
    """(level, measure) closest to `goal` in ratio, by bisection on a measure that grows with the
    level (PostgreSQL's row estimate, or the clock); `floor` keeps tiny values comparable, `best`
    is what is known already. Stops at the first level the measure cannot be taken at (None)."""
    def distance(value: float) -> float:
        return abs(math.log(max(value, floor) / goal))

    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        value = measure(_level(mid))
        if value is None:
            break
        if best is None or distance(value) < distance(best[1]):
            best = (_level(mid), value)
        if value < goal:
            lo = mid
        else:
            hi = mid
    return best


def _level(u: float) -> float:
    """Bisection runs on u in [0, 1]; the level is logarithmic in it (a share of the rows from one in a
    million to all of them), so that rare and common values are both reached in a few steps."""
    return 0.0 if u <= 0 else 10 ** (-LEVEL_DECADES * (1.0 - u))


def _numbers(conn: psycopg.Connection, values: list[str], type_name: str) -> list[float]:
    """The values as the numbers behind them (epoch seconds for times), or [] for other types."""
    to_number = _number_sql(type_name)
    if not values or to_number is None:
        return []
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(tag("SELECT " + to_number.format("v::" + type_name) +
                                            " FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i")),
                                (values,)).fetchall()
    except psycopg.Error:
        return []
    return [float(r[0]) for r in rows]


def _sorted(conn: psycopg.Connection, values: list[str], type_name: str) -> list[str]:
    """The sampled values in the order of their own type (for quantiles when pg_stats has none)."""
    if not values:
        return []
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(tag("SELECT v FROM unnest(%s::text[]) v ORDER BY v::{}")).format(
                sql.SQL(type_name)), (values,)).fetchall()
        return [r[0] for r in rows]
    except psycopg.Error:
        return sorted(values)


# -- typed literals pg_stat_statements cut in half --------------------------------------------------

_WORDS_BEFORE = re.compile(r"(?<![\w\"$.])((?:[A-Za-z_]\w*\s+){0,3}[A-Za-z_]\w*)\s*$")


def typed_literals(conn: psycopg.Connection, query: str) -> str:
    """The statement with each `<type> $n` that pg_stat_statements made of a typed literal written
    back as `$n::<type>`, so that it parses, plans and binds.

    The application wrote `now() - interval '60 days'` or `d = date '2024-01-01'`; pg_stat_statements
    replaces the string and keeps the type name: `interval $2`, which is a syntax error, so nothing
    could plan, time or even parse the statement. Adjacent to a `$n`, a word (or up to four, for
    `timestamp with time zone`) can only be a keyword or such a type name; PostgreSQL says which
    (`to_regtype`, on any server: the store's serves when the target is out of reach)."""
    tokens = _param_tokens(query)
    if not tokens:
        return query
    known: dict[str, str | None] = {}

    def type_of(phrase: str) -> str | None:
        key = " ".join(phrase.lower().split())
        if key not in known:
            try:
                with conn.transaction():
                    known[key] = conn.execute("SELECT to_regtype(%s)::text", (key,)).fetchone()[0]
            except psycopg.Error:
                known[key] = None   # a reserved word: a syntax error, not a type
        return known[key]

    out, pos = [], 0
    for n, start, end in tokens:
        m = _WORDS_BEFORE.search(query, pos, start)
        if m is None:
            continue
        words = list(re.finditer(r"[A-Za-z_]\w*", m.group(1)))
        for k in range(len(words)):   # the longest phrase first: "timestamp with time zone"
            first = words[k]
            phrase = m.group(1)[first.start():]
            if type_of(phrase):
                at = m.start(1) + first.start()
                out.append(query[pos:at] + f"${n}::{' '.join(phrase.split())}")
                pos = end
                break
    out.append(query[pos:])
    return "".join(out)
