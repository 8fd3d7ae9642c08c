"""What PostgreSQL sees of a statement: the relations its plan scans and the conditions, join keys
and sort keys on each, mapped back to base tables.

The plan has already resolved what the text leaves open: views are expanded to their base tables,
output aliases to the expressions they name, partitions appear as their own scans (mapped here to
their root with pg_partition_root), and every expression is printed the way PostgreSQL will match
it against an index expression (`md5(t.val)`, `date_trunc('day'::text, t.ts)`, `(t.a + t.b)`).
`EXPLAIN (VERBOSE, GENERIC_PLAN)` plans the statement without values and without running it.

Each condition (Filter, Index Cond, Recheck Cond, Hash/Merge Cond, Join Filter) is split into its
conjuncts and parsed with sqlglot (postgres dialect) by the same rules as the statement's text;
the operand's own text as PostgreSQL printed it is kept for expressions, qualifiers removed.
`analyze_planned` merges this with the sqlglot analysis of the text.

>>> _strip_outer("((t.a + t.b) > $1)")
'(t.a + t.b) > $1'
>>> _split_conjuncts("((t.a = $1) AND (md5(t.val) = $2))")
['t.a = $1', 'md5(t.val) = $2']
>>> _unqualify("date_trunc('day'::text, t.ts)", {"t"})
"date_trunc('day'::text, ts)"
>>> _sort_key("((t.a + t.b)) DESC NULLS LAST")
('((t.a + t.b))', 'DESC NULLS LAST')
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterator

import psycopg
import sqlglot
from psycopg import sql
from psycopg.rows import dict_row
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from ..bench.measure import generic_cost
from ..db import named
from .analyze import (KEEP_CAST, PG_TEXT, TYPE_NAME, JoinKey, Predicate, QueryShape, add_condition, analyze,
                      column_cast, indexable)
from .catalog import Catalog

PLAN_TIMEOUT_MS = 10_000
CONDITION_KEYS = ("Filter", "Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter",
                  "TID Cond")
# nodes between the root and the sort that serves ORDER BY (other sorts feed joins or grouping)
PASSTHROUGH = {"Limit", "Result", "Unique", "Gather Merge", "LockRows", "Subquery Scan"}
SORT_NODES = {"Sort", "Incremental Sort", "Merge Append"}
OPERATORS = {TokenType.EQ, TokenType.NEQ, TokenType.GT, TokenType.GTE, TokenType.LT, TokenType.LTE,
             TokenType.LIKE, TokenType.ILIKE, TokenType.IS, TokenType.PLACEHOLDER, TokenType.DAMP,
             TokenType.AT_GT, TokenType.LT_AT, TokenType.RLIKE, TokenType.NOT}
DIRECTION = re.compile(r"\s+(DESC|ASC)?\s*(NULLS (?:FIRST|LAST))?$")
PARTITION_ALIAS = re.compile(r"^(.+)_\d+$")


# -- the plan -----------------------------------------------------------------------------------------

def statement_plan(conn: psycopg.Connection, query: str, param_count: int) -> dict | None:
    """The generic plan (VERBOSE) of the statement, planned in a rolled-back transaction, or None
    when PostgreSQL cannot plan it without values (a `$n` whose type it cannot infer, ...)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(PLAN_TIMEOUT_MS)))
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(PLAN_TIMEOUT_MS // 5)))
            return generic_cost(conn, query, param_count > 0, param_count, verbose=True)[1]
    except psycopg.Error:
        return None


def walk(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans") or []:
        yield from walk(child)


def partition_roots(conn: psycopg.Connection, relations: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(schema, table) -> (schema, table) of the root of its partition tree (itself when none)."""
    if not relations:
        return {}
    schemas, tables = zip(*sorted(relations))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("select_partition_roots"),
                           {"schemas": list(schemas), "tables": list(tables)}).fetchall()
    out = {rel: rel for rel in relations}
    for r in rows:
        out[(r["schema"], r["table"])] = (r["root_schema"], r["root_table"])
    return out


def seen_shape(doc: dict, conn: psycopg.Connection) -> QueryShape:
    """The statement's shape as its plan shows it: base tables (partitions as their root), the
    conditions on each, join keys and the ORDER BY keys with their directions."""
    root = doc["Plan"]
    scans = [node for node in walk(root) if "Relation Name" in node and "Alias" in node]
    roots = partition_roots(conn, {(n.get("Schema") or "public", n["Relation Name"]) for n in scans})
    shape = QueryShape(kind="other")
    aliases: dict[str, str] = {}
    for node in scans:
        schema, table = roots[(node.get("Schema") or "public", node["Relation Name"])]
        aliases[node["Alias"]] = table
        if table not in shape.tables:
            shape.tables.append(table)
            shape.schemas[table] = schema
        # a partitioned table's own alias (in join conditions and sort keys above its Append) is the
        # one its partitions' aliases extend: e -> e_1, e_2
        parent = PARTITION_ALIAS.match(node["Alias"])
        if parent and table != node["Relation Name"]:
            aliases.setdefault(parent.group(1), table)
    for node in walk(root):
        for key in CONDITION_KEYS:
            if key in node:
                for conjunct in _split_conjuncts(node[key]):
                    parsed = _parse_condition(conjunct, set(aliases))
                    if parsed is not None:
                        _keep_column_casts(parsed)
                        add_condition(parsed, aliases, {}, shape)
    for text in _order_keys(root):
        key, dirs = _sort_key(text)
        node = _parse_operand(key, set(aliases))
        target = indexable(node, aliases, {}) if node is not None else None
        if target is None:
            shape.order_incomplete = True
            break
        shape.order_by.append((target[0], target[1]))
        shape.order_desc.append(dirs.startswith("DESC"))
        shape.order_dirs.append(dirs)
    return shape


def _order_keys(root: dict) -> list[str]:
    """The sort keys of the sort that serves the statement's ORDER BY, if the plan has one."""
    node = root
    while node is not None:
        if node.get("Node Type") in SORT_NODES:
            return [k for k in node.get("Sort Key") or [] if " USING " not in k]
        if node.get("Node Type") not in PASSTHROUGH:
            return []
        children = node.get("Plans") or []
        node = children[0] if len(children) == 1 else None
    return []


# -- PostgreSQL's text, in pieces -------------------------------------------------------------------

def _tokens(text: str) -> list:
    return Postgres().tokenize(text)


def _depths(tokens: list) -> list[int]:
    depth, out = 0, []
    for tok in tokens:
        if tok.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
        out.append(depth)
        if tok.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
    return out


def _strip_outer(text: str) -> str:
    """Remove parentheses that enclose the whole text."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        try:
            tokens = _tokens(text)
        except TokenError:
            return text
        depths = _depths(tokens)
        # the opening parenthesis closes only at the very end
        if any(d == 0 for d in depths[1:-1]) or tokens[-1].token_type != TokenType.R_PAREN:
            return text
        text = text[1:-1].strip()
    return text


def _split_conjuncts(text: str) -> list[str]:
    text = _strip_outer(text)
    try:
        tokens = _tokens(text)
    except TokenError:
        return []
    depths = _depths(tokens)
    cuts = [tok for tok, d in zip(tokens, depths) if d == 0 and tok.token_type == TokenType.AND]
    if not cuts:
        return [text]
    out, start = [], 0
    for tok in cuts:
        out.extend(_split_conjuncts(text[start:tok.start]))
        start = tok.end + 1
    out.extend(_split_conjuncts(text[start:]))
    return out


def _unqualify(text: str, aliases: set[str]) -> str:
    """PostgreSQL's text of an expression without the `alias.` before its columns."""
    tokens = _tokens(text)
    cut: list[tuple[int, int]] = []
    for a, b, c in zip(tokens, tokens[1:], tokens[2:]):
        if (a.token_type == TokenType.VAR and a.text in aliases and b.token_type == TokenType.DOT
                and (c.token_type in (TokenType.VAR, TokenType.IDENTIFIER) or re.fullmatch(r"\w+", c.text))
                and a.end + 1 == b.start):
            cut.append((a.start, b.end + 1))
    out, pos = [], 0
    for start, end in cut:
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _expression_text(text: str, aliases: set[str]) -> str:
    """PostgreSQL's text of an operand, unqualified, written as pg_get_indexdef writes index keys:
    a function call as it is, any other expression in parentheses."""
    text = _strip_outer(_unqualify(text, aliases))
    try:
        tokens = _tokens(text)
    except TokenError:
        return text
    depths = _depths(tokens)
    call = (len(tokens) >= 3 and tokens[0].token_type == TokenType.VAR
            and tokens[1].token_type == TokenType.L_PAREN and tokens[-1].token_type == TokenType.R_PAREN
            and not any(d == 0 for d in depths[2:-1]))
    single = len(tokens) == 1 or (len(tokens) == 3 and tokens[1].token_type == TokenType.DOT)
    return text if call or single else f"({text})"


def _keep_column_casts(condition: exp.Expression) -> bool:
    """Mark an operand that is a cast of a column (`(total)::double precision > $1`, where the
    application bound a float for a numeric column) so that it is indexed as the expression it is:
    an index on the column itself cannot serve it (candidates map a cast that changes no bits back
    to the column). True when there was one."""
    found = False
    for side in (condition.args.get("this"), condition.args.get("expression")):
        if not isinstance(side, exp.Expression) or not side.meta.get(PG_TEXT):
            continue
        node = side
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Cast) and isinstance(node.this, (exp.Column, exp.Paren)):
            node.meta[KEEP_CAST] = True
            found = True
    return found


def _parse_operand(text: str, aliases: set[str]) -> exp.Expression | None:
    try:
        node = sqlglot.parse_one(text, read="postgres")
        node.meta[PG_TEXT] = _expression_text(text, aliases)
    except (ParseError, TokenError, ValueError):
        return None
    return node


def _parse_condition(text: str, aliases: set[str]) -> exp.Expression | None:
    """The condition parsed by sqlglot, its operands carrying PostgreSQL's own text of them."""
    try:
        node = sqlglot.parse_one(text, read="postgres")
        tokens = _tokens(text)
    except (ParseError, TokenError, ValueError):
        return None
    while isinstance(node, exp.Paren):
        node = node.this
    depths = _depths(tokens)
    split = next((tok for i, (tok, d) in enumerate(zip(tokens, depths))
                  if i > 0 and d == 0 and tok.token_type in OPERATORS), None)
    if split is None:
        return node
    left_text = text[:split.start]
    left = node.args.get("this")
    if isinstance(left, exp.Expression):
        left.meta[PG_TEXT] = _expression_text(left_text, aliases)
    right = node.args.get("expression")
    if isinstance(right, exp.Expression):
        right.meta[PG_TEXT] = _expression_text(text[split.end + 1:], aliases)
    return node


def _sort_key(text: str) -> tuple[str, str]:
    """('expression', 'direction') of one Sort Key entry; the direction as an index key wants it."""
    m = DIRECTION.search(text)
    if not m or not m.group(0).strip():
        return text.strip(), ""
    desc = m.group(1) == "DESC"
    nulls = m.group(2)
    if nulls is None:
        direction = "DESC" if desc else ""
    elif desc:
        direction = "DESC" if nulls == "NULLS FIRST" else "DESC NULLS LAST"
    else:
        direction = "NULLS FIRST" if nulls == "NULLS FIRST" else ""
    return text[:m.start()].strip(), direction


# -- merged with the text ---------------------------------------------------------------------------

def normalized(column: str) -> str:
    """A column or expression compared loosely: casts, quotes, parentheses and spaces aside."""
    key = re.sub(f"::{TYPE_NAME}", "", column)
    return re.sub(r"[\s\"()]", "", key).lower()


def merge(text: QueryShape, seen: QueryShape, catalog: Catalog) -> QueryShape:
    """The text's shape completed with what the plan shows: base tables behind views, predicates
    on them, expressions, partition roots, and the ORDER BY keys when the text cannot say them."""
    schemas = dict(text.schemas)
    for table, schema in seen.schemas.items():
        if not schemas.get(table):
            schemas[table] = schema

    def real(table: str) -> bool:
        return catalog.table(table, schemas.get(table, "")) is not None

    # where the plan casts a column (`(amount)::double precision > $1`), the text's bare column is not
    # what PostgreSQL compares: the cast takes its place (candidates map a cast that changes no bits back)
    casts = [p for p in seen.predicates if column_cast(p.column)]
    predicates = [p for p in text.predicates if real(p.table)
                  and not any(_same_predicate(p, c, casts_apart=False) for c in casts)]
    for p in seen.predicates:
        if real(p.table) and not any(_same_predicate(p, q) for q in predicates):
            predicates.append(p)
    joins = [j for j in text.joins if real(j.left_table) and real(j.right_table)]
    for j in seen.joins:
        flipped = JoinKey(j.right_table, j.right_column, j.left_table, j.left_column)
        if real(j.left_table) and real(j.right_table) and j not in joins and flipped not in joins:
            joins.append(j)
    text_order_ok = bool(text.order_by) and not text.order_incomplete and all(real(t) for t, _ in text.order_by)
    order = (text.order_by, text.order_desc, text.order_dirs, text.order_incomplete)
    if seen.order_by and not text_order_ok:
        order = (seen.order_by, seen.order_desc, seen.order_dirs, seen.order_incomplete)
    return replace(text, tables=text.tables + [t for t in seen.tables if t not in text.tables],
                   schemas=schemas, predicates=predicates, joins=joins,
                   order_by=list(order[0]), order_desc=list(order[1]), order_dirs=list(order[2]),
                   order_incomplete=order[3])


def _same_predicate(a: Predicate, b: Predicate, casts_apart: bool = True) -> bool:
    if a.table != b.table or normalized(a.column) != normalized(b.column):
        return False
    if casts_apart and bool(column_cast(a.column)) != bool(column_cast(b.column)):
        return False   # `amount` and `(amount)::double precision`: only the cast's own index serves the cast
    if a.params or b.params:
        return bool(set(a.params) & set(b.params))
    return a.op == b.op and a.operator == b.operator


def analyze_planned(query: str, catalog: Catalog) -> QueryShape:
    """The statement's shape from its text (sqlglot), completed by its plan where PostgreSQL can
    plan it. Unqualified columns of multi-table statements are attributed with the catalog."""
    shape = analyze(query)
    if len(shape.tables) > 1:
        shape = analyze(query, catalog.columns_map(shape.tables, shape.schemas))
    doc = statement_plan(catalog.conn, query, shape.param_count)
    if doc is None:
        return shape
    try:
        with catalog.conn.transaction(force_rollback=True):
            seen = seen_shape(doc, catalog.conn)
    except psycopg.Error:
        return shape     # the catalog could not be read: the text's analysis stands
    return merge(shape, seen, catalog)


# -- "index used" -----------------------------------------------------------------------------------

def indexes_with_parents(conn: psycopg.Connection, names: set[str]) -> set[str]:
    """The index names a plan shows, plus the partitioned indexes they belong to: an index built on
    a partitioned table appears in plans under its partitions' own index names."""
    if not names:
        return set()
    rows = conn.execute(named("select_index_ancestors"), {"names": sorted(names)}).fetchall()
    return set(names) | {r[0] for r in rows}


def plan_uses_candidate(plan_json: dict, candidate, conn: psycopg.Connection) -> bool:
    """Does the plan use the index built from the candidate, directly or through a partition's index?"""
    from .candidates import index_name   # candidates imports nothing from here; keep it that way

    used = {node["Index Name"] for node in walk(plan_json.get("Plan", plan_json)) if "Index Name" in node}
    return index_name(candidate) in indexes_with_parents(conn, used)
