"""The row-finding half of a write: an UPDATE or DELETE is never executed by dbarch, but the rows it
touches are found by its FROM/USING and WHERE, which is where an index saves time on a big table.

`row_scan` writes that half as a SELECT dbarch owns: the same relations (the target with its alias,
then UPDATE's FROM or DELETE's USING list) and the same WHERE, cut from the statement's own text
(nothing re-rendered), selecting every `$n` the write binds cast to the type PostgreSQL inferred for
it in the write, so that the numbering, the types and therefore the values (observed, calibrated:
the rows a call touches are pg_stat_statements' rows per call) stay those of the write. The SELECT
goes through the same allow-list as any statement.

>>> row_scan("UPDATE orders o SET status = $1 WHERE o.user_id = $2", {1: "text", 2: "bigint"})
'SELECT $1::text, $2::bigint FROM orders o WHERE o.user_id = $2'
>>> row_scan("DELETE FROM sessions WHERE expires_at < now() - $1::interval RETURNING id", {1: "interval"})
'SELECT $1::interval FROM sessions WHERE expires_at < now() - $1::interval'
>>> row_scan("update t set a = u.b from u, v where u.id = t.uid and v.k = $1", {1: "integer"})
'SELECT $1::integer FROM t, u, v WHERE u.id = t.uid and v.k = $1'
>>> row_scan("DELETE FROM t", {}) is None
True
"""

from __future__ import annotations

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

_OPEN = (TokenType.L_PAREN, TokenType.L_BRACKET)
_CLOSE = (TokenType.R_PAREN, TokenType.R_BRACKET)


def row_scan(query: str, types: dict[int, str]) -> str | None:
    """The SELECT that finds the rows the UPDATE / DELETE writes, or None (no WHERE: every row, no
    index helps; WITH, MERGE, WHERE CURRENT OF or anything else: not such a write)."""
    try:
        tokens = Postgres().tokenize(query)
    except SqlglotError:
        return None
    top: list[tuple[str, int, int]] = []   # (upper-case word, start, end) of the words outside parentheses
    depth = 0
    for tok in tokens:
        if tok.token_type in _OPEN:
            depth += 1
        elif tok.token_type in _CLOSE:
            depth -= 1
        elif depth == 0:
            top.append((tok.text.upper(), tok.start, tok.end + 1))
    words = [w for w, _s, _e in top]
    if not words or words[0] not in ("UPDATE", "DELETE") or "WHERE" not in words or "CURRENT" in words:
        return None

    def at(word: str, after: int = 0) -> int | None:
        return next((i for i in range(after, len(top)) if top[i][0] == word), None)

    where = at("WHERE")
    end = at("RETURNING", where) or len(top)
    condition = query[top[where][2]:top[end][1] if end < len(top) else len(query)].strip().rstrip(";").strip()
    if words[0] == "UPDATE":
        set_at = at("SET")
        if set_at is None or set_at > where:
            return None
        target = query[top[0][2]:top[set_at][1]]
        extra_at = at("FROM", set_at)
    else:
        from_at = at("FROM")
        if from_at != 1:
            return None
        extra_at = at("USING", from_at)
        target = query[top[from_at][2]:top[extra_at if extra_at is not None and extra_at < where else where][1]]
    extra = query[top[extra_at][2]:top[where][1]] if extra_at is not None and extra_at < where else ""
    target = " ".join(target.split())
    count = max(types, default=0)
    if not target or not condition or any(n not in types for n in range(1, count + 1)):
        return None
    select = ", ".join(f"${n}::{types[n]}" for n in range(1, count + 1)) or "1"
    sources = target + (", " + " ".join(extra.split()) if extra.strip() else "")
    return f"SELECT {select} FROM {sources} WHERE {condition}"
