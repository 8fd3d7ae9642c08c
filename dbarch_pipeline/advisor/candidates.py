"""Candidate indexes for one statement, deterministic, in a sensible column order.

- btree: equality columns first, most selective first (pg_stats n_distinct); then one range column,
  or the ORDER BY columns when the statement has ORDER BY ... LIMIT, each key in the direction the
  ORDER BY asks (`ORDER BY a DESC, b` gets (a DESC, b); all keys DESC get a plain index, which a
  backward scan reads). `LIKE 'prefix%'` columns act as a range, with text_pattern_ops unless the
  database collation is C. INCLUDE columns when the statement then reads only the index
  (index-only scan) and the included columns are narrow.
- expression: `lower(email) = ...` gets an index on lower(email); any other expression the plan
  shows (`md5(val)`, `(a + b)`) gets one when PostgreSQL accepts it in an index (immutable),
  checked by building it on an empty copy of the table in a rolled-back transaction.
- GIN for jsonb containment (`@>`: jsonb_path_ops) and key existence (`?`: jsonb_ops), and for
  array containment and overlap.
- partial: when pg_stat_statements' rows per call show the statement asks for a rare value of a
  low-cardinality column (pg_stats most-common values), an index WHERE column = that value; never
  when other values are about as frequent (rows per call cannot tell which one the workload asks
  for), and, when the values the application sent are known, only if they concentrate on it.
- joins: the join key of each side (the inner side of a nested loop).
Keys that are no column of the table are never proposed. Candidates an existing index already
covers are dropped, and tables too small to benefit skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from ..db import named
from ..models import IndexCandidate
from .analyze import NOT_INDEXABLE, QueryShape, column_cast
from .catalog import Catalog, ExistingIndex, TableInfo

MAX_KEY_COLUMNS = 3
MAX_INCLUDE_WIDTH = 64        # bytes per row the INCLUDE columns may add
RARE_VALUE_FREQ = 0.1         # a value this rare is worth a partial index
OBSERVED_SHARE = 0.8          # share of the observed values that must be the partial index's value
EXPRESSION = re.compile(r"^(lower|upper)\((\w+)\)$")
TEXT_TYPES = ("text", "character varying", "character", "citext")


@dataclass(frozen=True)
class Skip:
    table: str
    reason: str


def candidates_for(shape: QueryShape, catalog: Catalog, *, min_table_rows: int = 10_000,
                   mean_rows: float | None = None, observed: dict[int, list[str]] | None = None
                   ) -> tuple[list[IndexCandidate], list[Skip]]:
    """All candidates for the statement, and the tables skipped with the reason.

    mean_rows: rows per call from pg_stat_statements, used to recognise a rare value being asked for.
    observed: values the application sent for each `$n`, when known (the server log).
    """
    out: list[IndexCandidate] = []
    skips: list[Skip] = []
    for table in shape.tables:
        info = catalog.table(table, shape.schemas.get(table, ""))
        if info is None:
            skips.append(Skip(table, "not a table of the target (view, CTE or missing)"))
            continue
        if info.reltuples < min_table_rows:
            skips.append(Skip(table, f"too small to benefit ({info.reltuples} rows < {min_table_rows}, "
                                     f"{info.rows_from})"))
            continue
        shape = _uncast(shape, table, info, catalog)
        usable = _usable_keys(shape, table, info, catalog)
        for cand in _table_candidates(shape, table, info, mean_rows, usable, observed or {}):
            covering = covered_by(cand, info.indexes, eq_prefix=_eq_prefix_len(shape, table, list(cand.columns)))
            if covering is not None:
                skips.append(Skip(table, f"{cand.label()} already covered by {covering.name}"))
                continue
            if not any(_same_index(cand, c) for c in out):
                out.append(cand)
    for cand in _branch_candidates(shape, catalog, min_table_rows):
        if not any(_same_index(cand, c) for c in out):
            out.append(cand)
    return out, skips


OR_BRANCH = "one branch of an OR (PostgreSQL serves an OR with an index per branch, in a BitmapOr)"


def _branch_candidates(shape: QueryShape, catalog: Catalog, min_table_rows: int) -> list[IndexCandidate]:
    """For `a = $1 OR b = $2` on one table: the plainest index of each branch. None serves the
    statement alone (the other branch still scans the table): they are measured together, as a
    configuration (audit.configuration_members). A branch an existing index already serves needs none."""
    out = []
    for table, branches in shape.any_of:
        info = catalog.table(table, shape.schemas.get(table, ""))
        if info is None or info.reltuples < min_table_rows:
            continue
        for branch in branches:
            sub = QueryShape(kind=shape.kind, tables=[table], schemas=shape.schemas, predicates=list(branch))
            usable = _usable_keys(sub, table, info, catalog)
            plain = [c for c in _table_candidates(sub, table, info, None, usable, {}) if not c.include and not c.where]
            if not plain:
                continue
            cand = plain[0]
            if covered_by(cand, info.indexes, eq_prefix=_eq_prefix_len(sub, table, list(cand.columns))) is None:
                out.append(replace(cand, reason=f"{OR_BRANCH}: {cand.reason}"))
    return out


def _uncast(shape: QueryShape, table: str, info: TableInfo, catalog: Catalog) -> QueryShape:
    """The plan's casts of a column that change no bits (`(ref)::text` of a varchar) are the column
    itself to an index: its own btree serves them."""
    def plain(p):
        cast = column_cast(p.column) if p.is_expression else None
        if (p.table == table and cast and cast[0] in info.columns
                and _binary_coercible(catalog, info.types[cast[0]], cast[1])):
            return replace(p, column=cast[0], is_expression=False)
        return p
    predicates = list(dict.fromkeys(plain(p) for p in shape.predicates))
    return shape if predicates == shape.predicates else replace(shape, predicates=predicates)


def _eq_prefix_len(shape: QueryShape, table: str, columns: list[str]) -> int:
    eq = {p.column for p in shape.predicates_on(table) if p.op in ("eq", "in")}
    n = 0
    for c in columns:
        if c not in eq:
            break
        n += 1
    return n


def _usable_keys(shape: QueryShape, table: str, info: TableInfo, catalog: Catalog) -> set[str]:
    """The statement's columns and expressions on the table that an index can hold: real columns,
    and expressions over real columns that PostgreSQL accepts in an index."""
    keys = {p.column for p in shape.predicates_on(table)}
    keys |= {c for t, c in shape.order_by + shape.group_by if t == table}
    keys |= {j.left_column for j in shape.joins if j.left_table == table}
    keys |= {j.right_column for j in shape.joins if j.right_table == table}
    return {k for k in keys if k in info.columns or _indexable_expression(k, info, catalog)}


def _indexable_expression(key: str, info: TableInfo, catalog: Catalog) -> bool:
    if key in info.columns or safe_expression(key) is None:
        return False
    m = EXPRESSION.match(key)
    if m:
        return m.group(2) in info.columns
    cache = (info.schema, info.table, key)
    if cache not in catalog.expression_checks:
        catalog.expression_checks[cache] = _accepted_in_an_index(catalog.conn, info, key)
    return catalog.expression_checks[cache]


def _binary_coercible(catalog: Catalog, source: str, target: str) -> bool:
    """PostgreSQL's verdict (pg_cast): the cast changes no bits, so an index on the column serves."""
    cache = ("", source, f"::{target}")
    if cache not in catalog.expression_checks:
        try:
            with catalog.conn.transaction():
                catalog.expression_checks[cache] = bool(catalog.conn.execute(named("select_binary_coercible"),
                                                                             {"source": source, "target": target}).fetchone()[0])
        except psycopg.Error:
            catalog.expression_checks[cache] = False
    return catalog.expression_checks[cache]


def _accepted_in_an_index(conn: psycopg.Connection, info: TableInfo, key: str) -> bool:
    """PostgreSQL's own verdict: can this expression be indexed (columns exist, functions and
    operators immutable)? An index on an empty copy of the table, rolled back."""
    probe = sql.Identifier("dbarch_expression_probe")
    verdict: bool | None = None
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL statement_timeout = 5000")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}.{})").format(
                probe, sql.Identifier(info.schema), sql.Identifier(info.table)))
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE INDEX ON pg_temp.{} ({})").format(probe, key_sql(key)))
                verdict = True
            except psycopg.Error:
                verdict = False
    except psycopg.Error:
        pass     # no temporary table here (no TEMP right, a read-only transaction)
    if verdict is not None:
        return verdict
    # then only what is surely immutable: function calls whose every overload is immutable, with
    # no operator and no cast other than to text (an operator or a cast may be only stable, as
    # timestamptz + interval is)
    node = safe_expression(key)
    if any(True for _ in node.find_all(exp.Binary)) or any(
            not c.to.is_type(*exp.DataType.TEXT_TYPES) for c in node.find_all(exp.Cast)):
        return False
    names = sorted({(f.name if isinstance(f, exp.Anonymous) else f.sql_name()).lower()
                    for f in node.find_all(exp.Func) if not isinstance(f, exp.Cast)})
    try:
        with conn.transaction(force_rollback=True):
            row = conn.execute(named("select_functions_immutable"), {"names": names}).fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


def _table_candidates(shape: QueryShape, table: str, info: TableInfo, mean_rows: float | None,
                      usable: set[str], observed: dict[int, list[str]]) -> list[IndexCandidate]:
    preds = [p for p in shape.predicates_on(table) if p.column in usable]
    eq = _unique([p.column for p in preds if p.op in ("eq", "in")])
    # most selective equality column first; expressions are as selective as their column
    eq.sort(key=lambda c: -info.distinct(_base_column(c)))
    ranges = _unique([p.column for p in preds if p.op == "range"])
    prefix_like = _unique([p.column for p in preds if p.op == "like" and p.operator == "LIKE"
                           and info.types.get(p.column, "").startswith(TEXT_TYPES)])
    dirs_all = shape.order_dirs if len(shape.order_dirs) == len(shape.order_by) else [""] * len(shape.order_by)
    order_keys = [(c, d) for (t, c), d in zip(shape.order_by, dirs_all) if t == table]
    order = [c for c, _ in order_keys]
    order_all_here = (bool(order) and len(order) == len(shape.order_by) and not shape.order_incomplete
                      and all(c in usable for c in order))
    order_dirs = dict(order_keys)
    if all(d == "DESC" for d in order_dirs.values()):
        order_dirs = {}      # all descending: a plain index read backwards serves it
    group = [c for t, c in shape.group_by if t == table and c in usable]
    joins = _unique([j.left_column if j.left_table == table else j.right_column
                     for j in shape.joins if table in (j.left_table, j.right_table)])
    joins = [c for c in joins if c in usable]
    like_op = "" if prefix_like and info.c_collation(prefix_like[0]) else "text_pattern_ops"

    out: list[IndexCandidate] = []

    def add(cols: list[str], reason: str, opclasses: dict[str, str] | None = None,
            where: tuple[str, str | None] | None = None, directions: dict[str, str] | None = None) -> None:
        cols = _unique(cols)[:MAX_KEY_COLUMNS]
        if not cols:
            return
        ops = tuple((opclasses or {}).get(c, "") for c in cols)
        dirs = tuple((directions or {}).get(c, "") for c in cols)
        cand = IndexCandidate(info.schema, info.table, tuple(cols), reason,
                              opclasses=ops if any(ops) else (), where=where,
                              directions=dirs if any(dirs) else ())
        if not any(_same_index(cand, c) for c in out):
            out.append(cand)

    if eq:
        if order_all_here and shape.has_limit:
            add(eq + [c for c in order if c not in eq], "equality columns, then ORDER BY for ... LIMIT",
                directions=order_dirs)
        if ranges:
            add(eq + ranges[:1], "equality columns, then one range column")
        if prefix_like:
            add(eq + prefix_like[:1], "equality columns, then the LIKE prefix column", {prefix_like[0]: like_op})
        add(eq, "equality columns, most selective first")
        if group:
            add(eq + [c for c in group if c not in eq], "equality columns, then GROUP BY columns")
    elif ranges or prefix_like:
        if order_all_here and shape.has_limit and ranges and order[0] != ranges[0]:
            add(order, "ORDER BY columns for ... LIMIT", directions=order_dirs)
        if ranges:
            add(ranges[:1], "range predicate")
        if prefix_like:
            add(prefix_like[:1], "LIKE 'prefix%' predicate" + (f" ({like_op})" if like_op else ""),
                {prefix_like[0]: like_op})
    elif order_all_here and shape.has_limit:
        add(order, "ORDER BY columns for ... LIMIT", directions=order_dirs)

    # IS [NOT] NULL is an index search (a btree keeps NULLs) when the side asked for is the rarer one
    # (pg_stats' null_frac): IS NOT NULL on a mostly NULL column gets a partial index of the rest
    for p in preds:
        frac = info.null_frac.get(p.column) if p.op == "null" and p.column in info.columns else None
        if frac is None:
            continue
        if p.operator == "IS NOT NULL" and frac > 0.5:
            add(eq or [p.column], f"IS NOT NULL on a column {frac:.0%} NULL: a partial index of the rest",
                where=(p.column, None))
        elif p.operator == "IS NULL" and frac < 0.5 and not (eq or ranges or prefix_like):
            add([p.column], f"IS NULL on a column {frac:.1%} NULL")

    unique = {ix.keys[0] for ix in info.indexes if ix.is_unique and len(ix.keys) == 1 and not ix.is_partial}
    for col in joins:
        if col in unique:
            continue   # this side is found by its own unique key: an index led by it adds nothing
        # the inner side of a nested loop needs its join key indexed; with an equality filter on the
        # same table the filter leads
        if eq and col not in eq:
            add(eq + [col], "equality columns, then join key")
        add([col], "join key (inner side of a nested loop)")

    out.extend(_gin_candidates(preds, info))
    out.extend(_trigram_candidates(preds, info, observed))
    out.extend(_partial_candidates(shape, table, info, eq, ranges, mean_rows, observed))
    out.extend(_include_variants(out, shape, table, info))
    return out


def _gin_candidates(preds, info: TableInfo) -> list[IndexCandidate]:
    out = []
    by_column: dict[str, set[str]] = {}
    for p in preds:
        if p.op in ("contains", "key", "overlap"):
            by_column.setdefault(p.column, set()).add(p.op)
    for column, ops in by_column.items():
        typ = info.types.get(column, "")
        if typ == "jsonb":
            # jsonb_path_ops is smaller and faster but serves only @>
            opclass = "jsonb_path_ops" if ops == {"contains"} else ""
            reason = "GIN for jsonb containment" if opclass else "GIN for jsonb key existence"
        elif typ.endswith("[]"):
            opclass, reason = "", "GIN for array containment / overlap"
        else:
            continue
        out.append(IndexCandidate(info.schema, info.table, (column,), reason, method="gin",
                                  opclasses=(opclass,) if opclass else ()))
    return out


def _trigram_candidates(preds, info: TableInfo, observed: dict[int, list[str]]) -> list[IndexCandidate]:
    """GIN over trigrams (pg_trgm, only where the target has it installed and its operator class is
    visible) for what no btree serves: ILIKE, and LIKE whose values the application sent start with a
    wildcard (`'%1234'`; without observed values a LIKE is taken for a prefix, which a btree serves)."""
    if not info.trigram:
        return []
    out = []
    for p in preds:
        if p.op != "like" or not info.types.get(p.column, "").startswith(TEXT_TYPES) or p.is_expression:
            continue
        values = [v for v in observed.get(p.param, []) if v] if p.param else []
        infix = bool(values) and sum(v[:1] in ("%", "_") for v in values) * 2 > len(values)
        if p.operator == "ILIKE" or infix:
            cand = IndexCandidate(info.schema, info.table, (p.column,),
                                  f"GIN trigram index (pg_trgm) for {p.operator} "
                                  + ("with a leading wildcard" if infix else "(no btree serves it)"),
                                  method="gin", opclasses=("gin_trgm_ops",))
            if not any(_same_index(cand, c) for c in out):
                out.append(cand)
    return out


def _partial_candidates(shape: QueryShape, table: str, info: TableInfo, eq: list[str], ranges: list[str],
                        mean_rows: float | None, observed: dict[int, list[str]]) -> list[IndexCandidate]:
    """A rare value of a low-cardinality column, recognised from the rows the statement returns.

    Rows per call only say how frequent the value asked for is. They single out one value only when
    no other value is about as frequent: a column whose values are all equally common, all asked
    for, returns the same rows per call whichever value is sent, and an index pinned to one of them
    would serve a fraction of the calls. When the values the application sent are known, they
    decide: most of them must be that value."""
    # rows per call tell the value's frequency only when nothing caps or folds them
    if not mean_rows or info.reltuples <= 0 or len(shape.tables) != 1 or shape.group_by or shape.has_limit:
        return []
    asked = mean_rows / info.reltuples
    out = []
    for column in eq:
        if column not in info.columns:
            continue
        common = info.mcv.get(column) or []
        similar = [(v, f) for v, f in common if asked / 3 <= f <= asked * 3]
        matches = [(v, f) for v, f in similar if f <= RARE_VALUE_FREQ]
        if len(matches) != 1 or len(similar) != 1 or info.distinct(column) > 50:
            continue
        value, freq = matches[0]
        # the values outside the most-common list, on average as frequent as the one asked for,
        # could be the ones asked for as well
        others = info.distinct(column) - len(common)
        rest = 1.0 - sum(f for _, f in common) - info.null_frac.get(column, 0.0)
        if others >= 1 and rest / others >= asked / 3:
            continue
        sent = [v for p in shape.predicates_on(table) if p.column == column and p.op == "eq"
                for n in p.params for v in observed.get(n, [])]
        if sent and sum(1 for v in sent if v == value) < OBSERVED_SHARE * len(sent):
            continue
        keys = [c for c in eq if c != column] + (ranges[:1] or [c for t, c in shape.order_by if t == table])
        out.append(IndexCandidate(
            info.schema, info.table, tuple(_unique(keys or [column])[:MAX_KEY_COLUMNS]),
            f"partial index: the statement returns {mean_rows:.0f} rows per call, matching the rare "
            f"value {column} = '{value}' ({freq:.1%} of rows)", where=(column, value)))
    return out


def _include_variants(cands: list[IndexCandidate], shape: QueryShape, table: str, info: TableInfo
                      ) -> list[IndexCandidate]:
    """The same btree keys plus narrow INCLUDE columns, when that leaves nothing to fetch from the heap."""
    if shape.select_star or len(shape.tables) != 1:
        return []
    needed = _unique([c for t, c in shape.selected if t == table]
                     + [p.column for p in shape.predicates_on(table)]
                     + [c for t, c in shape.order_by + shape.group_by if t == table])
    if any(c not in info.columns for c in needed):
        return []
    out = []
    for cand in cands:
        if cand.method != "btree" or cand.where or any(c not in info.columns for c in cand.columns):
            continue
        extra = [c for c in needed if c not in cand.columns]
        width = sum(info.avg_width.get(c, 1_000) for c in extra)
        if extra and len(extra) <= 3 and width <= MAX_INCLUDE_WIDTH:
            out.append(IndexCandidate(cand.schema, cand.table, cand.columns,
                                      cand.reason + ", INCLUDE for an index-only scan",
                                      opclasses=cand.opclasses, include=tuple(extra),
                                      directions=cand.directions))
    return out


def _same_index(a: IndexCandidate, b: IndexCandidate) -> bool:
    """Two candidates that would build the same index (whatever the reason given for each)."""
    return (a.schema, a.table, a.columns, a.method, a.opclasses, a.include, a.where, a.directions) == \
        (b.schema, b.table, b.columns, b.method, b.opclasses, b.include, b.where, b.directions)


def covered_by(cand: IndexCandidate, indexes: list[ExistingIndex], *, eq_prefix: int) -> ExistingIndex | None:
    """An existing index that already serves the candidate: same method and operator classes, same
    leading columns (equality columns in any order, the rest in order), and the INCLUDE columns.
    Partial indexes never count as covering. An index whose key directions are all reversed serves
    the same order, read backwards."""
    n = len(cand.columns)
    wanted = [_normalize_key(k) for k in cand.keys()]
    reversed_ = [_normalize_key(k) for k in _reversed(cand).keys()]
    for ix in indexes:
        if ix.method != cand.method or ix.is_partial or len(ix.keys) < n or cand.where:
            continue
        keys = [_normalize_key(k) for k in ix.keys[:n]]
        same = any(keys == w or (set(keys[:eq_prefix]) == set(w[:eq_prefix]) and keys[eq_prefix:] == w[eq_prefix:])
                   for w in (wanted, reversed_))
        if not same:
            continue
        available = {_normalize_key(k) for k in ix.keys[n:] + ix.include}
        if all(_normalize_key(c) in available for c in cand.include):
            return ix
    return None


REVERSED = {"": "DESC", "DESC": "", "NULLS FIRST": "DESC NULLS LAST", "DESC NULLS LAST": "NULLS FIRST"}


def _reversed(cand: IndexCandidate) -> IndexCandidate:
    dirs = tuple(REVERSED[d] for d in (cand.directions or ("",) * len(cand.columns)))
    return IndexCandidate(cand.schema, cand.table, cand.columns, cand.reason, method=cand.method,
                          opclasses=cand.opclasses, include=cand.include, where=cand.where, directions=dirs)


OPERATOR_WORDS = {"+": " plus ", "-": " minus ", "*": " times ", "/": " div ", "||": " concat ", "%": " mod "}


def _name_part(key: str) -> str:
    """A key in an index name; operators spelled out, so (a + b) is never named like (a, b)."""
    for op, word in OPERATOR_WORDS.items():
        key = key.replace(op, word)
    if not re.fullmatch(r"\w+", key):
        key = key.lower()   # an expression's keywords (COALESCE from a plan): a name never to quote
    return re.sub(r"\W+", "_", key).strip("_")


def index_name(cand: IndexCandidate) -> str:
    if cand.name:
        return cand.name
    dirs = cand.directions or ("",) * len(cand.columns)
    parts = [cand.table] + [_name_part(c) + (f"_{_name_part(d.lower())}" if d else "")
                            for c, d in zip(cand.columns, dirs)]
    if cand.include:
        parts += ["incl"] + list(cand.include)
    if cand.where:
        value = "not_null" if cand.where[1] is None else cand.where[1]
        parts += ["where", re.sub(r"\W+", "_", f"{cand.where[0]}_{value}").strip("_")]
    parts.append(cand.method if cand.method != "btree" else "idx")
    name = "_".join(parts)
    if len(name) <= 63:
        return name
    return name[:54] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


OPCLASSES = {"", "text_pattern_ops", "varchar_pattern_ops", "jsonb_path_ops", "jsonb_ops", "gin_trgm_ops"}
METHODS = {"btree", "gin"}


def index_ddl(cand: IndexCandidate, *, concurrently: bool = False, if_not_exists: bool = False) -> sql.Composed:
    """CREATE INDEX for the candidate; identifiers quoted by psycopg, operator classes and methods
    from fixed allow-lists."""
    if cand.method not in METHODS:
        raise ValueError(f"unsupported index method {cand.method!r}")
    keys = []
    ops = cand.opclasses or ("",) * len(cand.columns)
    dirs = cand.directions or ("",) * len(cand.columns)
    for column, opclass, direction in zip(cand.columns, ops, dirs):
        if opclass not in OPCLASSES:
            raise ValueError(f"unsupported operator class {opclass!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"unsupported key direction {direction!r}")
        key = key_sql(column)
        key = key + sql.SQL(" " + opclass) if opclass else key
        keys.append(key + sql.SQL(" " + direction) if direction else key)
    parts = [sql.SQL("CREATE INDEX {concurrently}{ine}{name} ON {schema}.{table}{using} ({keys})").format(
        concurrently=sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""),
        ine=sql.SQL("IF NOT EXISTS ") if if_not_exists else sql.SQL(""),
        name=sql.Identifier(index_name(cand)),
        schema=sql.Identifier(cand.schema), table=sql.Identifier(cand.table),
        using=sql.SQL(" USING " + cand.method) if cand.method != "btree" else sql.SQL(""),
        keys=sql.SQL(", ").join(keys),
    )]
    if cand.include:
        parts.append(sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, cand.include))))
    if cand.where:
        parts.append(sql.SQL(" WHERE {} IS NOT NULL").format(sql.Identifier(cand.where[0])) if cand.where[1] is None
                     else sql.SQL(" WHERE {} = {}").format(sql.Identifier(cand.where[0]), sql.Literal(cand.where[1])))
    return sql.Composed(parts)


DIRECTIONS = set(REVERSED)


def safe_expression(key: str) -> exp.Expression | None:
    """The parsed expression when `key` is one expression over columns that may be written into
    DDL as it is: one statement's worth of tokens, balanced parentheses, no query, parameter or
    aggregate inside. None otherwise (a plain column name included)."""
    try:
        tokens = Postgres().tokenize(key)
        node = sqlglot.parse_one(key, read="postgres")
    except (ParseError, TokenError, ValueError):
        return None
    depth = 0
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            return None
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tok.token_type, 0)
        if depth < 0:
            return None
    if depth != 0 or isinstance(node, exp.Column) or not any(True for _ in node.find_all(exp.Column)):
        return None
    if any(True for _ in node.find_all(*NOT_INDEXABLE)):
        return None
    return node


def key_sql(column: str) -> sql.Composable:
    """One index key: a column (quoted), lower()/upper() of one, or an expression written as
    PostgreSQL printed it, checked by safe_expression and parenthesized."""
    m = EXPRESSION.match(column)
    if m:
        return sql.SQL("({}({}))").format(sql.SQL(m.group(1)), sql.Identifier(m.group(2)))
    if "(" in column and safe_expression(column) is not None:
        return sql.SQL("(") + sql.SQL(column) + sql.SQL(")")
    return sql.Identifier(column)


def ddl_text(cand: IndexCandidate, **kwargs: bool) -> str:
    return index_ddl(cand, **kwargs).as_string(None)


def _base_column(column: str) -> str:
    m = EXPRESSION.match(column)
    return m.group(2) if m else column


def _normalize_key(key: str) -> str:
    key = re.sub(r"::[\w ]+", "", key)          # pg_get_indexdef adds casts: lower((email)::text)
    return re.sub(r"[\s\"()]", "", key).lower()


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
