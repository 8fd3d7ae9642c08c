"""Nothing Gemini (or a user) writes runs before sqlglot has checked it.

- `validate_read_only_select(sql, allowed_schemas)`: one statement, a SELECT (or set operation of
  SELECTs), no data-modifying CTE, no SELECT INTO, no FOR UPDATE/SHARE, no function with side
  effects (pg_sleep, set_config, dblink, lo_*, pg_read_file, nextval, ...), tables only in the
  allowed schemas, no comment that could hide a statement. Returns a `SafeSelect` or a `Rejection`.
- `validate_index(sql, conn)`: one CREATE INDEX [CONCURRENTLY] [IF NOT EXISTS], btree or gin, on an
  existing table and existing columns (or lower()/upper() of one), turned into our `IndexCandidate`
  so that the benchmark renders its own DDL through psycopg.sql, never Gemini's text.
- `validate_rewrite(original, rewrite, conn, param_sets)`: a rewrite must be a safe SELECT with the
  same `$n` and return the same rows as the original for every parameter set (in order when the
  original has ORDER BY), both run in one read-only snapshot that is rolled back.

sqlglot's checks give early, readable refusals; the authority is the allow-list resolved by
PostgreSQL (`safety.allowlist.check_statement`), which `validate_rewrite` and ask apply before
anything runs. What is executed is never trusted to the checks alone: `read_only()` runs statements
in a READ ONLY transaction with timeouts (generated SQL as the least-privilege role, see
safety.roles), and `fetch_read_only()` goes through a server-side cursor, which PostgreSQL itself
restricts to one SELECT without data-modifying WITH.

>>> validate_read_only_select("SELECT 1; DROP TABLE users").reason
'several statements (2): only one SELECT may run'
>>> validate_read_only_select("SELECT pg_sleep(5)").reason
'calls pg_sleep(), a function with side effects'
>>> validate_read_only_select("SELECT id FROM users ORDER BY id").ordered
True
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator, Sequence

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from ..advisor.candidates import EXPRESSION, OPCLASSES
from ..advisor.catalog import Catalog
from ..db import tag, named
from ..errors import DbarchError
from ..models import IndexCandidate
from ..safety import allowlist, roles, walls
from ..safety.allowlist import precheck

# Functions a read-only statement must never call: they sleep, change settings, reach outside the
# database, touch files or large objects, consume sequences, signal other sessions, take advisory
# locks, or run SQL given as a string (which would escape these checks).
DENIED_FUNCTIONS = frozenset({
    "set_config", "copy", "nextval", "setval", "pg_notify", "txid_current", "txid_current_if_assigned",
    "pg_current_xact_id", "pg_current_xact_id_if_assigned", "pg_terminate_backend", "pg_cancel_backend",
    "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal", "pg_promote", "pg_backup_start",
    "pg_backup_stop", "pg_log_backend_memory_contexts", "pg_import_system_collations",
    "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_create_restore_point",
})
DENIED_PREFIXES = (
    "pg_sleep", "dblink", "lo_", "pg_read_", "pg_ls_", "pg_write", "pg_file_", "pg_advisory",
    "pg_try_advisory", "pg_stat_reset", "pg_stat_statements_reset", "pg_replication_", "pg_create_",
    "pg_drop_replication", "pg_logical_", "query_to_xml", "cursor_to_xml", "table_to_xml",
    "schema_to_xml", "database_to_xml",
)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
INDEX_METHODS = ("btree", "gin")
MAX_INDEX_KEYS = 5
GIN_TYPES = ("jsonb", "tsvector")

_WRITES = tuple(getattr(exp, name) for name in
                ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy",
                 "Command", "Transaction", "Set", "Grant")
                if hasattr(exp, name))


@dataclass(frozen=True)
class Rejection:
    """A refused statement and, in plain words, why."""

    sql: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"sql": self.sql, "reason": self.reason}


@dataclass(frozen=True)
class SafeSelect:
    """A statement that passed the read-only checks. `sql` is the text to run: the statement from its
    first token to its last, without leading/trailing comments or semicolons."""

    sql: str
    tables: tuple[str, ...]      # as written: schema.table or table
    params: tuple[int, ...]      # the $n it uses
    ordered: bool                # top-level ORDER BY
    functions: tuple[str, ...] = ()   # functions sqlglot does not know (checked against pg_catalog)


def denied_function(name: str) -> bool:
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


# -- parsing -------------------------------------------------------------------------------------

def _parse_one(text: str) -> tuple[exp.Expression, list] | str:
    """(tree, tokens) of exactly one statement, or the reason it is refused."""
    problem = precheck(text)
    if problem:
        return problem
    try:
        tokens = sqlglot.Dialect.get_or_raise("postgres").tokenize(text)
    except (TokenError, ParseError) as exc:
        return f"sqlglot cannot read it: {_first_line(exc)}"
    except RecursionError:
        return "too deeply nested to parse safely"
    for token in tokens:
        for comment in token.comments or []:
            if ";" in comment:
                # PostgreSQL and sqlglot agree on comments today; a ';' inside one is only ever a
                # disguise, so it is refused rather than trusted to that agreement.
                return "a comment contains ';' and could hide a second statement"
    try:
        with _quiet_sqlglot():
            statements = sqlglot.parse(text, read="postgres")
    except (ParseError, TokenError) as exc:
        return f"sqlglot cannot parse it: {_first_line(exc)}"
    except RecursionError:
        return "too deeply nested to parse safely"
    statements = [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        return "empty statement"
    if len(statements) > 1:
        return f"several statements ({len(statements)}): only one may run"
    return statements[0], tokens


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    """sqlglot warns when it falls back to a generic Command; here that only means "refused"."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _statement_text(text: str, tokens: list) -> str:
    """The statement from its first token to its last, trailing semicolons and outer comments cut."""
    body = list(tokens)
    while body and body[-1].token_type == TokenType.SEMICOLON:
        body.pop()
    return text[body[0].start: body[-1].end + 1]


# The words a PostgreSQL statement can start with (the SQL Commands chapter of its manual): sqlglot
# falls back to an opaque command for any first word, so a word outside these is a typo, not a command.
PG_COMMAND_WORDS = frozenset("""ABORT ALTER ANALYZE ANALYSE BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY
CREATE DEALLOCATE DECLARE DELETE DISCARD DO DROP END EXECUTE EXPLAIN FETCH GRANT IMPORT INSERT LISTEN LOAD LOCK
MERGE MOVE NOTIFY PREPARE REASSIGN REFRESH REINDEX RELEASE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SELECT SET
SHOW START TABLE TRUNCATE UNLISTEN UPDATE VACUUM VALUES WITH""".split())


_STATEMENTS = tuple(getattr(exp, name) for name in (
    "Query", "DML", "DDL", "Command", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Copy", "Alter",
    "TruncateTable", "Set", "Transaction", "Commit", "Rollback", "Describe", "Grant", "Analyze", "Use", "Show")
    if hasattr(exp, name))


def _kind_name(tree: exp.Expression) -> str:
    """DROP TABLE, CREATE INDEX, COPY, INSERT, EXPLAIN ...: what the statement is, as SQL says it."""
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    if isinstance(tree, (exp.Create, exp.Drop)):
        verb = "CREATE" if isinstance(tree, exp.Create) else "DROP"
        return f"{verb} {tree.args.get('kind') or ''}".strip()
    return {"TruncateTable": "TRUNCATE"}.get(type(tree).__name__, type(tree).__name__.upper())


def _params(tree: exp.Expression) -> tuple[int, ...]:
    found = set()
    for node in tree.find_all(exp.Parameter):
        inner = node.this
        try:
            found.add(int(inner.this if isinstance(inner, exp.Literal) else inner.name))
        except (TypeError, ValueError):
            continue
    return tuple(sorted(found))


# -- read-only SELECT ------------------------------------------------------------------------------

def validate_read_only_select(text: str, allowed_schemas: Sequence[str] | None = ("public",), *,
                              allow_params: bool = True) -> SafeSelect | Rejection:
    """One read-only SELECT over the allowed schemas (None: any non-system schema), or why not."""
    try:
        return _validate_read_only_select(text, allowed_schemas, allow_params=allow_params)
    except RecursionError:
        return Rejection(text, "too deeply nested to parse safely")


def _validate_read_only_select(text: str, allowed_schemas: Sequence[str] | None, *,
                               allow_params: bool) -> SafeSelect | Rejection:
    parsed = _parse_one(text)
    if isinstance(parsed, str):
        reason = parsed.replace("only one may run", "only one SELECT may run")
        return Rejection(text, reason)
    tree, tokens = parsed

    if not isinstance(tree, _STATEMENTS):
        # sqlglot reads a lone expression (a misspelt keyword becomes a column or an alias) without
        # complaint; PostgreSQL would not
        first = text.strip().split(None, 1)[0] if text.strip() else ""
        return Rejection(text, f"syntax error at or near {first!r}: this is not an SQL statement (a typo?); "
                               "only a read-only SELECT may run")
    if isinstance(tree, exp.Command) and str(tree.this).upper() not in PG_COMMAND_WORDS:
        return Rejection(text, f"syntax error at or near {str(tree.this)!r}: no SQL statement starts with it "
                               "(a typo?); only a read-only SELECT may run")
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        return Rejection(text, f"{_kind_name(tree)} is not a SELECT: only a read-only SELECT may run")
    for select in tree.find_all(exp.Select):
        if select.args.get("into"):
            return Rejection(text, "SELECT INTO creates a table")
        if select.args.get("locks"):
            return Rejection(text, "FOR UPDATE/SHARE takes row locks")
    for node in tree.find_all(*_WRITES):
        if node is tree:
            continue
        where = " inside WITH (a data-modifying CTE)" if node.find_ancestor(exp.CTE) else ""
        return Rejection(text, f"contains {_kind_name(node)}{where}: it would change data")

    for i, token in enumerate(tokens[:-1]):
        if tokens[i + 1].token_type == TokenType.L_PAREN and token.token_type not in (TokenType.STRING,):
            if denied_function(token.text):
                return Rejection(text, f"calls {token.text.lower()}(), a function with side effects")
    unknown: list[str] = []
    for func in tree.find_all(exp.Func):
        name = func.name if isinstance(func, exp.Anonymous) else func.sql_name()
        if name and denied_function(name):
            return Rejection(text, f"calls {name.lower()}(), a function with side effects")
        if isinstance(func, exp.Anonymous):
            parent = func.parent
            if isinstance(parent, exp.Dot) and parent.expression is func and parent.this.name.lower() != "pg_catalog":
                return Rejection(text, f"calls {parent.this.name}.{func.name}(), a function outside pg_catalog")
            quoted = isinstance(func.this, exp.Identifier) and func.this.quoted
            if (func.name if quoted else func.name.lower()) not in unknown:
                unknown.append(func.name if quoted else func.name.lower())

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    allowed = {s.lower() for s in allowed_schemas} if allowed_schemas is not None else None
    tables: list[str] = []
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func) or not table.name:
            continue  # a set-returning function in FROM: checked with the functions above
        name, schema = table.name, table.db
        if table.catalog:
            return Rejection(text, f"reads {table.catalog}.{schema}.{name} in another database")
        if not schema and name.lower() in ctes:
            continue
        if schema:
            if schema.lower() in SYSTEM_SCHEMAS or schema.lower().startswith("pg_"):
                return Rejection(text, f"reads the system catalog {schema}.{name}")
            if allowed is not None and schema.lower() not in allowed:
                return Rejection(text, f"reads {schema}.{name}, outside the allowed schemas "
                                       f"({', '.join(sorted(allowed))})")
        elif name.lower().startswith("pg_"):
            return Rejection(text, f"reads the system catalog {name}")
        label = f"{schema}.{name}" if schema else name
        if label not in tables:
            tables.append(label)

    params = _params(tree)
    if params and not allow_params:
        return Rejection(text, f"uses parameters (${', $'.join(map(str, params))}) that nobody can fill")
    return SafeSelect(sql=_statement_text(text, tokens), tables=tuple(tables), params=params,
                      ordered=tree.args.get("order") is not None, functions=tuple(unknown))


def check_functions(conn: psycopg.Connection, checked: SafeSelect, allowed: Sequence[str] = ()) -> Rejection | None:
    """Refuse a call to a function PostgreSQL does not define itself (a function of the database, or
    of an extension, may write, sleep or reach the network), unless the user allowed it by name."""
    names = [f for f in checked.functions if f not in set(allowed)]
    if not names:
        return None
    builtin = {r[0] for r in conn.execute(named("llm_select_builtin_functions"), {"names": names})}
    for name in names:
        if name not in builtin:
            return Rejection(checked.sql, f"calls {name}(), which is not a PostgreSQL built-in (functions a "
                                          "database defines may have side effects)")
    return None


# -- CREATE INDEX ----------------------------------------------------------------------------------

def validate_index(text: str, conn: psycopg.Connection, *, catalog: Catalog | None = None,
                   reason: str = "suggested by Gemini") -> IndexCandidate | Rejection:
    """A CREATE INDEX on existing tables and columns as an IndexCandidate, or why not."""
    try:
        return _validate_index(text, conn, catalog=catalog, reason=reason)
    except RecursionError:
        return Rejection(text, "too deeply nested to parse safely")


def _validate_index(text: str, conn: psycopg.Connection, *, catalog: Catalog | None,
                    reason: str) -> IndexCandidate | Rejection:
    parsed = _parse_one(text)
    if isinstance(parsed, str):
        return Rejection(text, parsed.replace("only one may run", "only one CREATE INDEX may run"))
    tree, _tokens = parsed
    if not (isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "INDEX"):
        return Rejection(text, f"{_kind_name(tree)} is not a CREATE INDEX")
    if tree.args.get("unique"):
        return Rejection(text, "a UNIQUE index adds a constraint (writes may start failing), not only speed")
    index = tree.this
    target = index.args.get("table") if isinstance(index, exp.Index) else None
    params = index.args.get("params") if isinstance(index, exp.Index) else None
    if target is None or params is None:
        return Rejection(text, "sqlglot cannot find the table and columns of this CREATE INDEX")
    if params.args.get("with_storage") or params.args.get("tablespace"):
        return Rejection(text, "storage parameters and tablespaces are not supported")
    method = (params.args.get("using").name if params.args.get("using") else "btree").lower()
    if method not in INDEX_METHODS:
        return Rejection(text, f"index method {method} is not supported (btree or gin)")

    schema = target.db or ""
    if target.catalog:
        return Rejection(text, f"index on {target.sql('postgres')} in another database")
    if schema.lower() in SYSTEM_SCHEMAS or schema.lower().startswith("pg_"):
        return Rejection(text, f"index on the system catalog {schema}.{target.name}")
    info = (catalog or Catalog(conn)).table(target.name, schema)
    if info is None:
        return Rejection(text, f"table {schema + '.' if schema else ''}{target.name} does not exist")

    columns: list[str] = []
    opclasses: list[str] = []
    directions: set[bool] = set()
    for item in params.args.get("columns") or []:
        node = item
        if isinstance(node, exp.Ordered):
            directions.add(bool(node.args.get("desc")))
            node = node.this
        opclass = ""
        if isinstance(node, exp.Opclass):
            opclass = node.expression.name.lower()
            node = node.this
        if isinstance(node, exp.Collate):
            return Rejection(text, "COLLATE in an index key is not supported")
        key = _index_key(node)
        if key is None:
            return Rejection(text, f"index key {node.sql('postgres')} is not a column or lower()/upper() of one")
        base = EXPRESSION.match(key).group(2) if EXPRESSION.match(key) else key
        if base not in info.columns:
            return Rejection(text, f"column {base} does not exist in {info.schema}.{info.table}")
        if opclass not in OPCLASSES:
            return Rejection(text, f"operator class {opclass} is not supported")
        if key in columns:
            return Rejection(text, f"column {key} appears twice")
        columns.append(key)
        opclasses.append(opclass)
    if not columns:
        return Rejection(text, "the index has no key columns")
    if len(columns) > MAX_INDEX_KEYS:
        return Rejection(text, f"{len(columns)} key columns: more than {MAX_INDEX_KEYS} is never worth it")
    if len(directions) > 1:
        # (user_id, "timestamp" DESC) is the usual shape: the equality column's direction does not
        # matter and a btree is scanned both ways, so the keys are kept without directions; the
        # benchmark then shows whether the plan still uses the index.
        reason += " (ASC/DESC dropped: a btree is scanned in both directions)"
    if method == "gin":
        for key in columns:
            typ = info.types.get(key, "")
            if not (typ in GIN_TYPES or typ.endswith("[]")):
                return Rejection(text, f"gin on {key} ({typ or 'an expression'}): gin serves jsonb, arrays and tsvector")

    include: list[str] = []
    for ident in params.args.get("include") or []:
        name = ident.name
        if name not in info.columns:
            return Rejection(text, f"INCLUDE column {name} does not exist in {info.schema}.{info.table}")
        include.append(name)

    where = None
    predicate = params.args.get("where")
    if predicate is not None:
        cond = predicate.this
        if not (isinstance(cond, exp.EQ) and isinstance(cond.this, exp.Column) and not cond.this.table
                and isinstance(cond.expression, (exp.Literal, exp.Boolean))):
            return Rejection(text, f"partial index predicate {cond.sql('postgres')} is not `column = value`")
        if cond.this.name not in info.columns:
            return Rejection(text, f"column {cond.this.name} does not exist in {info.schema}.{info.table}")
        value = cond.expression
        where = (cond.this.name, value.name if isinstance(value, exp.Literal) else value.sql("postgres").lower())

    return IndexCandidate(schema=info.schema, table=info.table, columns=tuple(columns), reason=reason,
                          method=method, opclasses=tuple(opclasses) if any(opclasses) else (),
                          include=tuple(include), where=where)


def _index_key(node: exp.Expression) -> str | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column) and not node.table:
        return node.name
    if isinstance(node, (exp.Lower, exp.Upper)) and isinstance(node.this, exp.Column) and not node.this.table:
        fn = "lower" if isinstance(node, exp.Lower) else "upper"
        return f"{fn}({node.this.name})"
    return None


# -- execution, read-only ------------------------------------------------------------------------

@contextmanager
def read_only(conn: psycopg.Connection, *, statement_timeout_ms: int, lock_timeout_ms: int = 1_000,
              role: str | None = None, search_path: Sequence[str] | None = None,
              same_snapshot: bool = False, generated: bool = False,
              accept_superuser_risk: bool | None = None) -> Iterator[psycopg.Connection]:
    """A READ ONLY transaction, always rolled back, with timeouts; optionally as `role` and with
    `search_path` (so unqualified names resolve only in the allowed schemas). same_snapshot: every
    statement sees the same data (REPEATABLE READ), for comparing two queries fairly.

    generated: the SQL was not written by dbarch (an ask answer, a rewrite): it runs as the
    least-privilege role (safety.roles.effective_role: never a superuser unless the risk was
    accepted), with temp_file_limit, idle and client-connection checks on top of the timeouts."""
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # a BEGIN inside someone else's transaction would be ignored, and our ROLLBACK would end theirs
        raise RuntimeError("read_only() needs an idle autocommit connection to own its transaction")
    if generated:
        role = roles.effective_role(conn, role, accept_superuser_risk)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if same_snapshot else "BEGIN READ ONLY")
    try:
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(statement_timeout_ms))))
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(int(lock_timeout_ms))))
        if generated:
            walls.transaction_limits(conn)
        if search_path:
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(
                sql.SQL(", ").join(sql.Identifier(s) for s in search_path)))
        roles.set_role(conn, role)
        yield conn
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.UNKNOWN:
            conn.execute("ROLLBACK")
            if generated:
                # session-level advisory locks survive a rollback: none taken by generated SQL outlives it
                conn.execute("SELECT pg_advisory_unlock_all()")


class _Unknown(str):
    """A text parameter sent with type `unknown`, so the server infers its type from the query."""


class _UnknownDumper(psycopg.adapt.Dumper):
    oid = 0

    def dump(self, obj: str) -> bytes:
        return obj.encode()


def fetch_read_only(conn: psycopg.Connection, text: str, params: Sequence[Any] | None = None, *,
                    max_rows: int) -> tuple[list[str], list[tuple], bool]:
    """(column names, at most max_rows rows, truncated?) of a validated SELECT, inside read_only().

    A server-side cursor fetches only what is kept, and its DECLARE accepts nothing but one SELECT
    without data-modifying WITH: PostgreSQL's own guard behind sqlglot's.
    """
    # `text` has passed validate_read_only_select: it is the statement itself, so it is composed as
    # SQL; its $n stay raw and values are bound by the server.
    # rows compared for a proof are never cut (a cut value could make two rows look equal)
    caps = walls.Caps(max_rows=max_rows, max_value_bytes=1 << 40, max_total_bytes=1 << 40)
    columns, rows, truncated, _notes = fetch_capped_select(conn, text, params, caps=caps)
    return columns, rows, truncated


def fetch_capped_select(conn: psycopg.Connection, text: str, params: Sequence[Any] | None = None, *,
                        caps: walls.Caps, cut_on_server: bool = False) -> tuple[list[str], list[tuple], bool, list[str]]:
    """fetch_read_only with every cap (rows, bytes per value, total bytes) enforced while fetching,
    and notes saying what was cut. cut_on_server: long values are cut by the server before they are
    sent (text to its first max_value_bytes characters, other variable-length values to NULL), so a
    190 MB value never reaches the client."""
    query = sql.SQL(tag(text))
    wrapped = cut_on_server and caps.max_value_bytes < (1 << 30) and not params
    if wrapped:
        query = walls.value_capped(conn, text, caps.max_value_bytes)
    name = f"dbarch_{uuid.uuid4().hex[:12]}"
    with psycopg.RawServerCursor(conn, name) as cur:
        cur.adapters.register_dumper(_Unknown, _UnknownDumper)
        values = [(_Unknown(v) if isinstance(v, str) else v) for v in params] if params else None
        cur.execute(query, values)
        rows, notes = walls.fetch_capped(cur, caps)
        columns = [d.name for d in cur.description or []]
    if wrapped:
        cut = sum(int(r[-1] or 0) for r in rows[:caps.max_rows])
        rows, columns = [r[:-1] for r in rows], columns[:-1]
        if cut:
            notes.append(f"{cut} value(s) longer than {caps.max_value_bytes:,} bytes were cut by the server "
                         "(text shortened, other values shown as NULL)")
    truncated = len(rows) > caps.max_rows or bool(notes and notes[0].startswith("stopped"))
    return columns, rows[:caps.max_rows], truncated, notes


# -- rewrites ------------------------------------------------------------------------------------

def validate_rewrite(original: str, rewrite: str, conn: psycopg.Connection,
                     param_sets: Sequence[Sequence[Any]], *, allowed_schemas: Sequence[str] | None = None,
                     statement_timeout_ms: int = 10_000, max_rows: int = 10_000) -> SafeSelect | Rejection:
    """The rewrite, if it is a safe SELECT that returns the original's rows for every parameter set
    (in the same order when the original has ORDER BY); both run in one read-only snapshot."""
    orig = validate_read_only_select(original, allowed_schemas)
    if isinstance(orig, Rejection):
        return Rejection(rewrite, f"the original is not a read-only SELECT ({orig.reason}); only SELECTs are rewritten")
    new = validate_read_only_select(rewrite, allowed_schemas)
    if isinstance(new, Rejection):
        return new
    # the allow-list, resolved by PostgreSQL: the original runs here too, so it must pass as well
    original_verdict = allowlist.check_statement(conn, orig.sql, allowed_schemas=allowed_schemas)
    if not original_verdict.ok:
        return Rejection(rewrite, f"the original may not run on the sandbox ({original_verdict.reason}), "
                                  "so nothing can be compared")
    verdict = allowlist.check_statement(conn, new.sql, allowed_schemas=allowed_schemas,
                                        param_types=original_verdict.param_types)
    if not verdict.ok:
        return Rejection(rewrite, verdict.reason)
    if new.params != orig.params:
        have = ", ".join(f"${p}" for p in new.params) or "none"
        want = ", ".join(f"${p}" for p in orig.params) or "none"
        return Rejection(rewrite, f"uses parameters {have} but the original uses {want}")
    sets = [tuple(p) for p in param_sets] if orig.params else [()]
    if not sets:
        return Rejection(rewrite, "no parameter values to compare the results with")
    policy = roles.policy_of(conn)
    if not policy.proofs_allowed:
        return Rejection(rewrite, policy.proofs_refusal)
    try:
        return _compare(orig, new, rewrite, conn, sets, statement_timeout_ms=statement_timeout_ms, max_rows=max_rows)
    except DbarchError as exc:
        return Rejection(rewrite, f"{exc.problem} (fix: {exc.fix})" if exc.fix else exc.problem)


def _compare(orig: SafeSelect, new: SafeSelect, rewrite: str, conn: psycopg.Connection,
             sets: Sequence[tuple], *, statement_timeout_ms: int, max_rows: int) -> SafeSelect | Rejection:
    for values in sets:
        try:
            with read_only(conn, statement_timeout_ms=statement_timeout_ms, same_snapshot=True, generated=True):
                cols_a, rows_a, cut_a = fetch_read_only(conn, orig.sql, values or None, max_rows=max_rows)
                try:
                    cols_b, rows_b, cut_b = fetch_read_only(conn, new.sql, values or None, max_rows=max_rows)
                except psycopg.Error as exc:
                    return Rejection(rewrite, f"fails on the sandbox: {_first_line(exc)}")
        except psycopg.Error as exc:
            return Rejection(rewrite, f"the original fails on the sandbox, nothing to compare: {_first_line(exc)}")
        shown = _show(values)
        if cut_a or cut_b:
            return Rejection(rewrite, f"more than {max_rows} rows for {shown}: too many to prove equal")
        if len(cols_a) != len(cols_b):
            return Rejection(rewrite, f"returns {len(cols_b)} columns, the original {len(cols_a)}")
        a = [_comparable(r) for r in rows_a]
        b = [_comparable(r) for r in rows_b]
        if Counter(a) != Counter(b):
            return Rejection(rewrite, f"returns different rows for {shown}: {_difference(a, b)}")
        if orig.ordered and a != b:
            return Rejection(rewrite, f"returns the same rows in a different order for {shown} "
                                      "(the original has ORDER BY)")
    return new


def _difference(original: list[tuple], rewrite: list[tuple]) -> str:
    missing = sum((Counter(original) - Counter(rewrite)).values())
    extra = sum((Counter(rewrite) - Counter(original)).values())
    return (f"{len(rewrite)} rows against the original's {len(original)}; {missing} of the original's "
            f"rows missing, {extra} rows it does not return")


def _comparable(row: Sequence[Any]) -> tuple:
    return tuple(_value(v) for v in row)


def _value(v: Any) -> Any:
    if isinstance(v, float):
        # two plans may sum in another order: equal to 12 significant digits is equal
        return float(f"{v:.12g}") if math.isfinite(v) else v
    if isinstance(v, Decimal):
        return v.normalize()
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _show(values: Sequence[Any]) -> str:
    if not values:
        return "the statement"
    return "(" + ", ".join(f"${i}={v!r}" for i, v in enumerate(values, 1)) + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
