"""What a statement asks of each table: predicates, join keys, ORDER BY and GROUP BY columns.

Parsed with sqlglot's postgres dialect. pg_stat_statements replaces constants by `$n`; each `$n`
that is compared with a column is remembered so that the benchmark can sample real values for it.

>>> shape = analyze("SELECT * FROM users u WHERE u.email = $1 ORDER BY u.created_at DESC LIMIT 10")
>>> [(p.table, p.column, p.op, p.param) for p in shape.predicates]
[('users', 'email', 'eq', 1)]
>>> shape.order_by, shape.order_dirs, shape.has_limit
([('users', 'created_at')], ['DESC'], True)

ORDER BY an output alias sorts by the aliased expression (as PostgreSQL resolves it), never by a
column that happens to share the alias's name. Expressions other than lower()/upper() come from the
statement's plan (advisor/plan.py), where PostgreSQL prints them in the form it will match an
index expression against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

READ_KINDS = {"select"}
# Functions whose result can be indexed as an expression (immutable, one column argument).
INDEXABLE_FUNCTIONS = {"lower", "upper"}


class UnparseableQuery(ValueError):
    """sqlglot cannot parse the statement; it is skipped and counted, not fatal."""


@dataclass(frozen=True)
class Predicate:
    table: str              # table name (unqualified; schema in QueryShape.schemas)
    column: str             # column name, or an expression such as lower(email)
    op: str                 # eq | in | range | like | null | contains | key | overlap
    param: int | None = None  # the $n compared with the column, if any
    is_expression: bool = False
    operator: str = ""      # the SQL operator, for sampling (=, <, >=, BETWEEN, LIKE ...)
    params: tuple[int, ...] = ()  # all $n involved (BETWEEN has two, IN may have several)


@dataclass(frozen=True)
class JoinKey:
    left_table: str
    left_column: str
    right_table: str
    right_column: str


@dataclass
class QueryShape:
    kind: str                                       # select | insert | update | delete | other
    tables: list[str] = field(default_factory=list)  # distinct real tables, in order of appearance
    schemas: dict[str, str] = field(default_factory=dict)  # table -> schema ('' when unqualified)
    predicates: list[Predicate] = field(default_factory=list)
    joins: list[JoinKey] = field(default_factory=list)
    order_by: list[tuple[str, str]] = field(default_factory=list)
    order_desc: list[bool] = field(default_factory=list)
    order_dirs: list[str] = field(default_factory=list)  # '' | DESC | NULLS FIRST | DESC NULLS LAST
    order_incomplete: bool = False   # some ORDER BY key is no column or expression of one table
    group_by: list[tuple[str, str]] = field(default_factory=list)
    selected: list[tuple[str, str]] = field(default_factory=list)  # columns the statement reads
    select_star: bool = False
    has_limit: bool = False
    limit_params: list[int] = field(default_factory=list)
    param_count: int = 0
    functions: set[str] = field(default_factory=set)   # every function the statement calls, lower case
    # `a = $1 OR b = $2` on one table: (table, the predicates of each branch); PostgreSQL can serve it
    # only with an index on every branch, combined by a BitmapOr
    any_of: list[tuple[str, tuple[tuple[Predicate, ...], ...]]] = field(default_factory=list)

    @property
    def is_read_only(self) -> bool:
        return self.kind in READ_KINDS

    def predicates_on(self, table: str) -> list[Predicate]:
        return [p for p in self.predicates if p.table == table]


def parse(sql_text: str) -> exp.Expression:
    from ..safety.allowlist import precheck

    problem = precheck(sql_text)   # a parser bomb is refused before anything recursive sees it
    if problem:
        raise UnparseableQuery(problem)
    try:
        statements = sqlglot.parse(sql_text, read="postgres")
    except (ParseError, TokenError) as exc:
        raise UnparseableQuery(f"sqlglot cannot parse the statement: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise UnparseableQuery("too deeply nested to parse safely") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise UnparseableQuery(f"expected one statement, found {len(statements)}")
    tree = statements[0]
    if isinstance(tree, exp.Command):
        raise UnparseableQuery(f"sqlglot does not understand this statement ({tree.name})")
    return tree


def analyze(sql_text: str, columns: Mapping[str, set[str]] | None = None) -> QueryShape:
    """The shape of one statement. `columns` (table -> column names) resolves unqualified
    columns in multi-table queries; without it they are attributed only when one table is in scope."""
    tree = parse(sql_text)
    kind = _kind(tree)
    shape = QueryShape(kind=kind)
    shape.param_count = max((param_index(p) or 0 for p in tree.find_all(exp.Parameter)), default=0)
    shape.functions = {(f.name if isinstance(f, exp.Anonymous) else f.sql_name()).lower()
                       for f in tree.find_all(exp.Func)}
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}

    for table in tree.find_all(exp.Table):
        name = table.name
        if not name or name in ctes or isinstance(table.this, exp.Func):
            continue
        if name not in shape.tables:
            shape.tables.append(name)
            shape.schemas[name] = table.db or ""

    for scope in _scopes(tree):
        _analyze_scope(scope, shape, ctes, columns or {})
    return shape


def _kind(tree: exp.Expression) -> str:
    if isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        # a SELECT with a data-modifying CTE is not read-only
        if any(isinstance(c.this, (exp.Insert, exp.Update, exp.Delete)) for c in tree.find_all(exp.CTE)):
            return "other"
        return "select"
    for name, cls in (("insert", exp.Insert), ("update", exp.Update), ("delete", exp.Delete)):
        if isinstance(tree, cls):
            return name
    return "other"


def _scopes(tree: exp.Expression) -> list[exp.Expression]:
    """Each SELECT / UPDATE / DELETE node with its own FROM list."""
    return [node for node in tree.find_all(exp.Select, exp.Update, exp.Delete)]


def _scope_tables(scope: exp.Expression, ctes: set[str]) -> dict[str, str]:
    """alias (or name) -> table name for the tables directly in this scope's FROM / JOIN."""
    aliases: dict[str, str] = {}
    sources: list[exp.Expression] = []
    if isinstance(scope, exp.Select):
        from_ = scope.args.get("from") or scope.args.get("from_")
        if from_ is not None:
            sources.append(from_.this)
        sources.extend(j.this for j in scope.args.get("joins") or [])
    elif isinstance(scope, exp.Update):
        sources.append(scope.this)
        from_ = scope.args.get("from") or scope.args.get("from_")
        if from_ is not None:
            sources.append(from_.this)
    elif isinstance(scope, exp.Delete):
        sources.append(scope.this)
        sources.extend(scope.args.get("using") or [])
    for source in sources:
        if isinstance(source, exp.Table) and source.name and source.name not in ctes:
            aliases[source.alias_or_name] = source.name
            aliases.setdefault(source.name, source.name)
    return aliases


def _resolve(column: exp.Column, aliases: dict[str, str], columns: Mapping[str, set[str]]) -> str | None:
    if column.table:
        return aliases.get(column.table)
    tables = sorted(set(aliases.values()))
    if len(tables) == 1:
        return tables[0]
    owners = [t for t in tables if column.name in columns.get(t, set())]
    return owners[0] if len(owners) == 1 else None


def param_index(node: exp.Expression) -> int | None:
    """n of a `$n` node (None for anything else)."""
    if isinstance(node, exp.Parameter):
        inner = node.this
        try:
            return int(inner.this if isinstance(inner, exp.Literal) else inner.name)
        except (TypeError, ValueError):
            return None
    return None


def _params_in(node: exp.Expression) -> list[int]:
    found = [param_index(p) for p in node.find_all(exp.Parameter)]
    return [p for p in found if p is not None]


def _is_value(node: exp.Expression) -> bool:
    """A constant, a parameter, or an expression of them (no column reference)."""
    return node is not None and not any(True for _ in node.find_all(exp.Column)) and not any(
        True for _ in node.find_all(exp.Select))


# Node types that never belong in an index expression.
NOT_INDEXABLE = (exp.Select, exp.Subquery, exp.Query, exp.AggFunc, exp.Window, exp.Parameter,
                 exp.Placeholder, exp.Star, exp.Command, exp.Predicate)
PG_TEXT = "pg_text"   # meta key: the operand as PostgreSQL printed it in the plan
KEEP_CAST = "keep_cast"   # meta key: a cast of a column the plan shows PostgreSQL really applies
# a type as PostgreSQL prints it in a plan: `double precision`, `character varying(40)`, `numeric(10,2)`, `text[]`
TYPE_NAME = r"[\w ]+(?:\(\s*\d+(?:\s*,\s*\d+)?\s*\))?(?:\[\])?"
COLUMN_CAST = re.compile(rf'\(*"?(\w+)"?\)*::({TYPE_NAME})\)*')


def column_cast(expression: str) -> tuple[str, str] | None:
    """A bare column cast to a type, as a plan prints it: (column, type), else None.

    >>> column_cast("((amount)::double precision)"), column_cast('("ref")::character varying(40)')
    (('amount', 'double precision'), ('ref', 'character varying(40)'))
    >>> column_cast("lower((email)::text)") is None
    True
    """
    m = COLUMN_CAST.fullmatch(expression.strip())
    return (m.group(1), m.group(2).strip()) if m else None


def indexable(node: exp.Expression, aliases: dict[str, str], columns: Mapping[str, set[str]]
               ) -> tuple[str, str, bool] | None:
    """(table, column-or-expression, is_expression) for a column, lower(column)-like node, or (from
    a plan, where PostgreSQL's own text of the operand is known) any expression over one table."""
    pg_text = node.meta.get(PG_TEXT) if node is not None else None
    while isinstance(node, exp.Paren) or (isinstance(node, exp.Cast) and not node.meta.get(KEEP_CAST) and
                                          isinstance(_unparen(node.this), exp.Column)):
        node = node.this
    if isinstance(node, exp.Column):
        table = _resolve(node, aliases, columns)
        return (table, node.name, False) if table else None
    if isinstance(node, (exp.Lower, exp.Upper)) and isinstance(node.this, exp.Column):
        table = _resolve(node.this, aliases, columns)
        func = "lower" if isinstance(node, exp.Lower) else "upper"
        return (table, f"{func}({node.this.name})", True) if table else None
    if pg_text and node is not None and not any(True for _ in node.find_all(*NOT_INDEXABLE)):
        tables = {_resolve(c, aliases, columns) for c in node.find_all(exp.Column)}
        if len(tables) == 1 and None not in tables:
            return (tables.pop(), pg_text, True)
    return None


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.Where):
        node = node.this
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


RANGE_OPS = {exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
# operators a GIN index serves: jsonb/array containment, jsonb key existence, array overlap
GIN_OPS = {exp.ArrayContainsAll: "contains", exp.JSONBContainsTopKey: "key",
           exp.JSONBContainsAnyTopKeys: "key", exp.JSONBContainsAllTopKeys: "key",
           exp.ArrayOverlaps: "overlap"}
GIN_SYMBOLS = {"contains": "@>", "key": "?", "overlap": "&&"}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _analyze_scope(scope: exp.Expression, shape: QueryShape, ctes: set[str],
                   columns: Mapping[str, set[str]]) -> None:
    aliases = _scope_tables(scope, ctes)
    if not aliases:
        return
    conditions = _conjuncts(scope.args.get("where"))
    for join in scope.args.get("joins") or []:
        conditions += _conjuncts(join.args.get("on"))

    for cond in conditions:
        add_condition(cond, aliases, columns, shape)

    if isinstance(scope, exp.Select):
        for projection in scope.expressions:
            # count(*) reads no column; SELECT * and t.* read them all
            if any(not isinstance(star.parent, exp.Count) for star in projection.find_all(exp.Star)):
                shape.select_star = True
            for col in projection.find_all(exp.Column):
                if isinstance(col.this, exp.Star):
                    shape.select_star = True
                    continue
                target = indexable(col, aliases, columns)
                if target and target not in [(t, c, False) for t, c in shape.selected]:
                    shape.selected.append((target[0], target[1]))
        order = scope.args.get("order")
        if order is not None:
            outputs = _output_expressions(scope)
            for ordered in order.expressions:
                target = indexable(_order_target(ordered.this, outputs), aliases, columns)
                if target is None:
                    # keys after one no index can hold are of no use to an index
                    shape.order_incomplete = True
                    break
                shape.order_by.append((target[0], target[1]))
                shape.order_desc.append(bool(ordered.args.get("desc")))
                shape.order_dirs.append(direction(bool(ordered.args.get("desc")),
                                                  ordered.args.get("nulls_first")))
        group = scope.args.get("group")
        if group is not None:
            for g in group.expressions:
                target = indexable(g, aliases, columns)
                if target and not target[2]:
                    shape.group_by.append((target[0], target[1]))
        limit = scope.args.get("limit")
        if limit is not None:
            shape.has_limit = True
            shape.limit_params.extend(_params_in(limit))
        offset = scope.args.get("offset")
        if offset is not None:
            shape.limit_params.extend(_params_in(offset))


def direction(desc: bool, nulls_first: bool | None) -> str:
    """The index key direction for one ORDER BY key, '' for PostgreSQL's default (ASC NULLS LAST)."""
    if nulls_first is None:
        nulls_first = desc     # PostgreSQL: NULLs sort as larger than any value
    if desc:
        return "DESC" if nulls_first else "DESC NULLS LAST"
    return "NULLS FIRST" if nulls_first else ""


def _output_expressions(scope: exp.Select) -> tuple[dict[str, exp.Expression], list[exp.Expression]]:
    """The SELECT list by output name (aliases) and by position."""
    named: dict[str, exp.Expression] = {}
    for projection in scope.expressions:
        if isinstance(projection, exp.Alias):
            named.setdefault(projection.alias, projection.this)
    return named, [p.this if isinstance(p, exp.Alias) else p for p in scope.expressions]


def _order_target(node: exp.Expression, outputs: tuple[dict[str, exp.Expression], list[exp.Expression]]
                  ) -> exp.Expression:
    """What an ORDER BY key sorts by: as in PostgreSQL, a bare name is an output column first (its
    expression, whatever columns share the name), an integer is an output position."""
    named, positional = outputs
    if isinstance(node, exp.Column) and not node.table and node.name in named:
        return named[node.name]
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        n = int(node.this)
        if 1 <= n <= len(positional):
            return positional[n - 1]
    return node


def _disjuncts(node: exp.Expression) -> list[exp.Expression]:
    node = _unparen(node)
    if isinstance(node, exp.Or):
        return _disjuncts(node.left) + _disjuncts(node.right)
    return [node]


def _any_of(cond: exp.Or, aliases: dict[str, str], columns: Mapping[str, set[str]], shape: QueryShape) -> None:
    """An OR whose every branch filters the same one table by something an index serves."""
    branches = []
    for branch in _disjuncts(cond):
        scratch = QueryShape(kind=shape.kind)
        for c in _conjuncts(branch):
            add_condition(c, aliases, columns, scratch)
        if scratch.joins or scratch.any_of or not scratch.predicates:
            return
        branches.append(tuple(scratch.predicates))
    tables = {p.table for branch in branches for p in branch}
    if len(tables) == 1 and len(branches) > 1:
        group = (tables.pop(), tuple(branches))
        if group not in shape.any_of:
            shape.any_of.append(group)


def add_condition(cond: exp.Expression, aliases: dict[str, str], columns: Mapping[str, set[str]],
                  shape: QueryShape) -> None:
    while isinstance(cond, exp.Paren):
        cond = cond.this
    if isinstance(cond, exp.Or):
        _any_of(cond, aliases, columns, shape)
        return
    if isinstance(cond, exp.EQ):
        left = indexable(cond.left, aliases, columns)
        right = indexable(cond.right, aliases, columns)
        if left and right and not left[2] and not right[2] and left[0] != right[0]:
            shape.joins.append(JoinKey(left[0], left[1], right[0], right[1]))
            return
        for side, other in ((left, cond.right), (right, cond.left)):
            if side and _is_value(other):
                params = tuple(_params_in(other))
                op, symbol = ("in", "= ANY") if isinstance(other, exp.Any) else ("eq", "=")
                shape.predicates.append(Predicate(side[0], side[1], op, params[0] if params else None,
                                                  side[2], symbol, params))
                return
        return
    for cls, symbol in RANGE_OPS.items():
        if isinstance(cond, cls):
            left = indexable(cond.left, aliases, columns)
            right = indexable(cond.right, aliases, columns)
            if left and _is_value(cond.right):
                side, other, op = left, cond.right, symbol
            elif right and _is_value(cond.left):
                side, other, op = right, cond.left, FLIPPED[symbol]
            else:
                return
            params = tuple(_params_in(other))
            shape.predicates.append(Predicate(side[0], side[1], "range", params[0] if params else None,
                                              side[2], op, params))
            return
    if isinstance(cond, exp.Between):
        side = indexable(cond.this, aliases, columns)
        if side and _is_value(cond.args["low"]) and _is_value(cond.args["high"]):
            params = tuple(_params_in(cond.args["low"]) + _params_in(cond.args["high"]))
            shape.predicates.append(Predicate(side[0], side[1], "range", params[0] if params else None,
                                              side[2], "BETWEEN", params))
        return
    if isinstance(cond, exp.In):
        side = indexable(cond.this, aliases, columns)
        values = cond.expressions
        if side and values and all(_is_value(v) for v in values):
            params = tuple(p for v in values for p in _params_in(v))
            shape.predicates.append(Predicate(side[0], side[1], "in", params[0] if params else None,
                                              side[2], "IN", params))
        elif side and cond.args.get("unnest") is not None:
            params = tuple(_params_in(cond.args["unnest"]))
            shape.predicates.append(Predicate(side[0], side[1], "in", params[0] if params else None,
                                              side[2], "= ANY", params))
        return
    if isinstance(cond, (exp.Like, exp.ILike)):
        side = indexable(cond.this, aliases, columns)
        if side and _is_value(cond.expression):
            params = tuple(_params_in(cond.expression))
            op = "ILIKE" if isinstance(cond, exp.ILike) else "LIKE"
            shape.predicates.append(Predicate(side[0], side[1], "like", params[0] if params else None,
                                              side[2], op, params))
        return
    for cls, op in GIN_OPS.items():
        if isinstance(cond, cls):
            side = indexable(cond.this, aliases, columns)
            if side and not side[2] and _is_value(cond.expression):
                params = tuple(_params_in(cond.expression))
                shape.predicates.append(Predicate(side[0], side[1], op, params[0] if params else None,
                                                  False, GIN_SYMBOLS[op], params))
            return
    if isinstance(cond, exp.Is) and isinstance(cond.expression, exp.Null):
        side = indexable(cond.this, aliases, columns)
        if side:
            shape.predicates.append(Predicate(side[0], side[1], "null", None, side[2],
                                              "IS NOT NULL" if cond.args.get("negate") else "IS NULL"))
