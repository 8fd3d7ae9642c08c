"""The allow-list, resolved the way PostgreSQL resolves it.

A statement dbarch did not write itself (an `ask` answer, a Gemini rewrite, an application
statement the benchmark re-runs) may run only if everything that would execute is known to be safe.
Names are not enough: `lower(int)` may be a user's overload, `t.func` is a call, a view's column, a
domain's CHECK, an operator or a cast run code no name in the text reveals. So PostgreSQL itself
parse-analyzes the statement: inside a transaction that is always rolled back, it becomes the body
of a temporary SQL function (`BEGIN ATOMIC SELECT 1 FROM (<statement>) q; END`, its `$n` typed as
PostgreSQL infers them through PREPARE), and the stored tree (`pg_proc.prosqlbody`) holds the
resolved OIDs of every function, operator, aggregate, relation and type. Views, row-level security
policies, virtual generated columns and domain CHECKs are followed recursively through their own
trees; operators bring their code and the planner's estimators; types bring their I/O functions.

Known safe: a function PostgreSQL defines (pg_catalog, built in) or one of a trusted extension,
not volatile (a few harmless volatile built-ins aside: random, clock), and not in the class that
executes SQL text or reads server state, settings, files, statistics or other sessions (found from
the catalog, see sql/queries/safety_select_unsafe_builtins.sql). Relations: ordinary tables, views,
materialized views and partitioned tables in the allowed schemas, not members of an extension.

>>> nesting_depth("SELECT ((1)) + '(((' ")
2
"""

from __future__ import annotations

import re
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import psycopg
from psycopg import sql

from ..db import named

# Extensions whose functions, operators and types count as known (still: never volatile).
TRUSTED_EXTENSIONS = ("vector", "pg_trgm", "citext", "hstore", "ltree", "cube", "fuzzystrmatch", "unaccent",
                      "btree_gin", "btree_gist", "intarray", "earthdistance", "isn", "seg")
# Volatile built-ins whose only effect is a random number or the clock.
HARMLESS_VOLATILE = frozenset({"random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7",
                               "clock_timestamp", "timeofday", "statement_timestamp"})
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
READABLE_KINDS = {"r": "table", "v": "view", "m": "materialized view", "p": "partitioned table"}
KIND_NAMES = {"f": "foreign table", "S": "sequence", "i": "index", "c": "composite type", "t": "TOAST table",
              "I": "partitioned index"}
MAX_TEXT_CHARS = 200_000
MAX_NESTING = 200
MAX_OBJECTS = 5_000
PROBE_TIMEOUT_MS = 5_000

# errors of a statement that is merely wrong (not a refusal): they go back to the author as they are
_ORDINARY_ERRORS = (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction,
                    psycopg.errors.AmbiguousColumn, psycopg.errors.DatatypeMismatch, psycopg.errors.GroupingError,
                    psycopg.errors.InvalidTextRepresentation, psycopg.errors.UndefinedObject,
                    psycopg.errors.AmbiguousFunction, psycopg.errors.InvalidColumnReference)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_FIELD = re.compile(r":(\w+) (\d+|\(o(?: \d+)*\))")
_FUNCTION_KEYS = {"funcid", "opfuncid", "aggfnoid", "winfnoid", "tsmhandler", "hashfuncid", "negfuncid"}
_OPERATOR_KEYS = {"opno", "opnos", "sortop", "eqop"}


@dataclass
class Verdict:
    """May the statement run? If not, `reasons` says why, in words a user (and Gemini) can act on."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)    # signatures of every function that would run
    relations: list[str] = field(default_factory=list)    # schema.name of every relation read
    param_types: list[str] = field(default_factory=list)
    error: psycopg.Error | None = field(default=None, repr=False)   # PostgreSQL could not analyze it

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reasons": self.reasons, "functions": self.functions, "relations": self.relations}


def refused(reason: str) -> Verdict:
    return Verdict(ok=False, reasons=[reason])


def nesting_depth(text: str) -> int:
    """The deepest nesting of parentheses outside quotes (a parser bomb is refused before anything
    recursive, sqlglot or PostgreSQL, sees it)."""
    depth = deepest = 0
    quote = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    return deepest


def precheck(text: str) -> str | None:
    """Why the text is refused before any parser sees it, or None."""
    if not text or not text.strip():
        return "empty statement"
    if len(text) > MAX_TEXT_CHARS:
        return f"the statement is {len(text):,} characters long, more than the {MAX_TEXT_CHARS:,} accepted"
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        return f"parentheses nested {depth} deep, more than the {MAX_NESTING} accepted (a parser bomb)"
    return None


# -- the probe -------------------------------------------------------------------------------------

@contextmanager
def _scratch(conn: psycopg.Connection, timeout_ms: int, search_path: Sequence[str] | None) -> Iterator[None]:
    """A transaction (or a savepoint inside the caller's) that is always rolled back."""
    status = conn.info.transaction_status
    own = status == psycopg.pq.TransactionStatus.IDLE
    if own and not conn.autocommit:
        raise RuntimeError("check_statement() needs an autocommit connection or an open transaction")
    if status not in (psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS):
        raise RuntimeError("check_statement() needs a connection that is idle or in a healthy transaction")
    # fixed statements and composed literals only, sent together (simple protocol, one round trip)
    opening = [sql.SQL("BEGIN" if own else "SAVEPOINT dbarch_probe"),
               sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(timeout_ms))),
               sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(min(int(timeout_ms), 2_000)))]
    if search_path:
        opening.append(sql.SQL("SET LOCAL search_path = {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in search_path)))
    conn.execute(sql.SQL("; ").join(opening))
    try:
        yield
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.UNKNOWN:
            conn.execute("ROLLBACK" if own else "ROLLBACK TO SAVEPOINT dbarch_probe; RELEASE SAVEPOINT dbarch_probe")


def _extended(conn: psycopg.Connection, query: sql.Composable) -> None:
    # binary=True forces the extended protocol: one statement, whatever the text holds
    with conn.cursor() as cur:
        cur.execute(query, binary=True)


def _param_types(conn: psycopg.Connection, body: str) -> list[int]:
    name = f"dbarch_probe_{uuid.uuid4().hex[:12]}"
    _extended(conn, sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(body))
    row = conn.execute("SELECT parameter_types::oid[] FROM pg_prepared_statements WHERE name = %s",
                       (name,)).fetchone()
    conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
    return list(row[0] or []) if row else []


def _analyzed_tree(conn: psycopg.Connection, body: str, types: Sequence[str]) -> str:
    name = f"dbarch_probe_{uuid.uuid4().hex[:12]}"
    # the type names are PostgreSQL's own rendering (format_type), quoted where needed
    args = sql.SQL(", ").join(sql.SQL(t) for t in types)
    _extended(conn, sql.SQL("CREATE FUNCTION pg_temp.{}({}) RETURNS SETOF int LANGUAGE sql BEGIN ATOMIC "
                            "SELECT 1 FROM (\n").format(sql.Identifier(name), args)
              + sql.SQL(body) + sql.SQL("\n) AS dbarch_probe; END"))
    row = conn.execute("SELECT prosqlbody::text FROM pg_proc WHERE proname = %s AND "
                       "pronamespace = pg_my_temp_schema()", (name,)).fetchone()
    return row[0]


def _fields(tree: str) -> dict[str, set[int]]:
    """key -> OIDs found under that key anywhere in a node tree (quoted names removed first, so an
    alias can never pose as a field)."""
    out: dict[str, set[int]] = {}
    for key, value in _FIELD.findall(_QUOTED.sub('""', tree)):
        nums = [int(v) for v in value.strip("()o ").split()] if value.startswith("(") else [int(value)]
        out.setdefault(key, set()).update(n for n in nums if n)
    return out


def _shape_problems(tree: str) -> list[str]:
    flat = _QUOTED.sub('""', tree)
    problems = []
    if re.search(r":commandType [^1]", flat):
        problems.append("contains a statement that is not a SELECT (data-modifying WITH or similar)")
    if ":hasModifyingCTE true" in flat:
        problems.append("contains a data-modifying WITH")
    if ":hasForUpdate true" in flat or re.search(r":rowMarks \(", flat):
        problems.append("FOR UPDATE/SHARE takes row locks")
    if re.search(r":utilityStmt [^<]", flat):
        problems.append("contains a utility statement")
    if _top_level_queries(flat) != 1:
        problems.append("holds several statements: only one may run")
    return problems


def _top_level_queries(flat: str) -> int:
    """How many statements the function body holds (its outermost {QUERY ...} nodes)."""
    depth = count = 0
    for i, ch in enumerate(flat):
        if ch == "{":
            if depth == 0 and flat.startswith("{QUERY", i):
                count += 1
            depth += 1
        elif ch == "}":
            depth -= 1
    return count


# -- the catalog -----------------------------------------------------------------------------------

_unsafe_cache: "weakref.WeakKeyDictionary[psycopg.Connection, dict[int, str]]" = weakref.WeakKeyDictionary()


def unsafe_builtins(conn: psycopg.Connection) -> dict[int, str]:
    """oid -> why, for the built-ins that are never allowed (cached per connection)."""
    found = _unsafe_cache.get(conn)
    if found is None:
        found = {int(r[0]): f"{r[1]}(): {r[2]}" for r in conn.execute(named("safety_select_unsafe_builtins"))}
        _unsafe_cache[conn] = found
    return found


@dataclass
class _Walk:
    conn: psycopg.Connection
    allowed_schemas: frozenset[str] | None
    allowed_functions: frozenset[str]
    trusted: frozenset[str]
    unsafe: dict[int, str]
    reasons: list[str] = field(default_factory=list)
    functions: dict[int, str] = field(default_factory=dict)
    relations: dict[int, str] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    handlers: set[int] = field(default_factory=set)
    todo: dict[str, set[int]] = field(default_factory=lambda: {"f": set(), "o": set(), "r": set(), "t": set()})

    def add_tree(self, tree: str | None) -> None:
        if not tree:
            return
        for key, oids in _fields(tree).items():
            if key == "tsmhandler":
                self.handlers.update(oids)   # a TABLESAMPLE method's handler (volatile by declaration)
                self.add("f", oids)
            elif key in _FUNCTION_KEYS:
                self.add("f", oids)
            elif key in _OPERATOR_KEYS:
                self.add("o", oids)
            elif key == "relid":
                self.add("r", oids)
            elif "type" in key.lower() and key != "commandType":
                self.add("t", oids)

    def add(self, kind: str, oids: Iterable[int]) -> None:
        for oid in oids:
            if oid and (kind, int(oid)) not in self.seen:
                self.seen.add((kind, int(oid)))
                self.todo[kind].add(int(oid))

    def refuse(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def run(self) -> None:
        while any(self.todo.values()):
            if len(self.seen) > MAX_OBJECTS:
                self.refuse(f"reaches more than {MAX_OBJECTS} catalog objects: too much to check")
                return
            batch = {k: sorted(v) for k, v in self.todo.items()}
            for v in self.todo.values():
                v.clear()
            if batch["r"]:
                self.relations_(batch["r"])
            if batch["o"]:
                self.operators_(batch["o"])
            if batch["t"]:
                self.types_(batch["t"])
            if batch["f"]:
                self.functions_(batch["f"])

    def _trusted(self, builtin: bool, extension: str | None) -> bool:
        return builtin or (extension is not None and extension in self.trusted)

    def functions_(self, oids: list[int]) -> None:
        rows = self.conn.execute(named("safety_select_functions"), {"oids": oids}).fetchall()
        found = {r[0] for r in rows}
        for oid in set(oids) - found:
            self.refuse(f"runs function {oid}, which the catalog does not know")
        for (oid, schema, name, signature, volatility, kind, builtin, extension, *agg) in rows:
            self.functions[oid] = signature
            if name in self.allowed_functions or f"{schema}.{name}" in self.allowed_functions:
                continue   # the user allowed it by name
            if not self._trusted(builtin, extension):
                where = f"extension {extension}" if extension else f"schema {schema}"
                self.refuse(f"calls {signature} (from {where}), which is not a PostgreSQL built-in or a "
                            "trusted extension's: functions a database defines may do anything")
                continue
            if oid in self.unsafe:
                self.refuse(f"calls {self.unsafe[oid]}")
                continue
            if volatility == "v" and not (builtin and name in HARMLESS_VOLATILE) and oid not in self.handlers:
                self.refuse(f"calls {signature}, a volatile function (it may have side effects)")
                continue
            aggregate_parts = [a for a in agg[:-1] if a]
            self.add("f", aggregate_parts)
            if agg[-1]:
                self.add("o", [agg[-1]])

    def operators_(self, oids: list[int]) -> None:
        rows = self.conn.execute(named("safety_select_operators"), {"oids": oids}).fetchall()
        for oid in set(oids) - {r[0] for r in rows}:
            self.refuse(f"uses operator {oid}, which the catalog does not know")
        for oid, schema, signature, code, rest, join, builtin, extension in rows:
            if not self._trusted(builtin, extension):
                self.refuse(f"uses operator {signature} (schema {schema}), which is not PostgreSQL's or a "
                            "trusted extension's")
                continue
            self.add("f", [f for f in (code, rest, join) if f])

    def relations_(self, oids: list[int]) -> None:
        rows = self.conn.execute(named("safety_select_relations"), {"oids": oids}).fetchall()
        for oid in set(oids) - {r[0] for r in rows}:
            self.refuse(f"reads relation {oid}, which the catalog does not know")
        for oid, schema, name, kind, rowtype, rls, extension, trees in rows:
            label = f"{schema}.{name}"
            self.relations[oid] = label
            if schema in SYSTEM_SCHEMAS or schema.startswith("pg_"):
                self.refuse(f"reads {label}, a system catalog or view (settings, statistics and activity "
                            "are never readable)")
                continue
            if extension is not None:
                self.refuse(f"reads {label}, which belongs to the extension {extension}, not to the application")
                continue
            if kind not in READABLE_KINDS:
                self.refuse(f"reads {label}, a {KIND_NAMES.get(kind, 'relation of kind ' + kind)}: only tables, "
                            "views and materialized views may be read")
                continue
            if self.allowed_schemas is not None and schema not in self.allowed_schemas:
                self.refuse(f"reads {label}, outside the allowed schemas ({', '.join(sorted(self.allowed_schemas))})")
                continue
            if rowtype:
                self.add("t", [rowtype])
            for tree in trees or []:
                self.add_tree(tree)   # a view's query, RLS policies, virtual generated columns

    def types_(self, oids: list[int]) -> None:
        rows = self.conn.execute(named("safety_select_types"), {"oids": oids}).fetchall()
        # keys holding "type" also hold non-type numbers (e.g. a join type); only real types matter
        for (oid, schema, name, kind, builtin, extension, basetype, elem, _array, io, fields_, range_parts,
             checks) in rows:
            if self._trusted(builtin, extension):
                continue
            if kind == "d":
                self.add("t", [basetype])
                for tree in checks or []:
                    self.add_tree(tree)   # the domain's CHECK expressions run on every cast to it
            elif kind == "c":
                self.add("t", fields_ or [])
            elif kind == "r" or kind == "m":
                self.add("t", [t for t in (range_parts or [])[:1] if t])
                self.add("f", [f for f in (range_parts or [])[1:] if f])
            elif kind == "e":
                pass   # an enum's I/O is PostgreSQL's own
            else:
                self.add("f", [f for f in (io or []) if f])   # a base type's I/O (CoerceViaIO)
                if elem:
                    self.add("t", [elem])


def check_statement(conn: psycopg.Connection, text: str, *, allowed_schemas: Sequence[str] | None = None,
                    param_types: Sequence[str] | None = None, search_path: Sequence[str] | None = None,
                    allowed_functions: Sequence[str] = (), trusted_extensions: Sequence[str] = TRUSTED_EXTENSIONS,
                    timeout_ms: int = PROBE_TIMEOUT_MS) -> Verdict:
    """May `text` run? PostgreSQL parse-analyzes it (never plans or executes it) in a transaction that
    is rolled back; everything the analyzed tree would run is checked against the allow-list.

    allowed_schemas: the schemas whose relations may be read (None: any that is not a system schema);
    param_types: the `$n` types (default: as PostgreSQL infers them); search_path: for resolving
    names as the statement will be run; allowed_functions: names the user allowed explicitly.
    """
    problem = precheck(text)
    if problem:
        return refused(problem)
    body = text.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    unsafe = unsafe_builtins(conn)
    walk = _Walk(conn, frozenset(allowed_schemas) if allowed_schemas is not None else None,
                 frozenset(allowed_functions), frozenset(trusted_extensions), unsafe)
    types: list[str] = []
    try:
        with _scratch(conn, timeout_ms, search_path):
            if param_types is not None:
                oids = [conn.execute("SELECT %s::regtype::oid", (t,)).fetchone()[0] for t in param_types]
            else:
                oids = _param_types(conn, body)
            types = conn.execute("SELECT coalesce(array_agg(format_type(t, NULL) ORDER BY n), '{}') "
                                 "FROM unnest(%s::oid[]) WITH ORDINALITY AS u(t, n)", (list(oids),)).fetchone()[0]
            tree = _analyzed_tree(conn, body, types)
            problems = _shape_problems(tree)
            if problems:
                return Verdict(ok=False, reasons=problems, param_types=types)
            walk.add_tree(tree)
            walk.run()
    except psycopg.errors.QueryCanceled:
        return refused("PostgreSQL could not analyze it in time (statement or lock timeout)")
    except psycopg.Error as exc:
        if conn.closed or conn.broken:
            # a lost connection is no refusal: the run stops with an error naming the database
            from ..errors import explain

            raise (explain(exc) or exc) from None
        verdict = refused(f"PostgreSQL cannot analyze it as one read-only SELECT: {_first_line(exc)}")
        if isinstance(exc, _ORDINARY_ERRORS):
            verdict.error = exc
        return verdict
    return Verdict(ok=not walk.reasons, reasons=walk.reasons, functions=sorted(set(walk.functions.values())),
                   relations=sorted(set(walk.relations.values())), param_types=types)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

