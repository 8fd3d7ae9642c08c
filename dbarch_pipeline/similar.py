"""`dbarch similar`: the nearest past optimizations to a statement, those that can serve it first.

The statement's vector comes from the store's embedding cache when its fingerprint is known (no
model load at all), else the model embeds it once and the cache keeps it, so asking again is fast.
Similar text is not enough: `lower(email) = $1` and `email = $1` embed close together, but an
expression index on lower(email) cannot serve the second. Each neighbour's index is therefore
checked against what the statement asks of its tables (sqlglot analysis), and one that cannot
serve it is never ranked above one that can.
"""

from __future__ import annotations

import psycopg

from .advisor.analyze import UnparseableQuery, analyze
from .memory import store
from .memory.embeddings import MODEL_NAME, Embedder
from .memory.fingerprint import fingerprint, normalize
from .watch import normalize_key, parse_index_ddl

DEFAULT_MIN_SIMILARITY = 0.5


def query_vector(conn: psycopg.Connection, sql_text: str, embedder: Embedder | None = None):
    """The statement's embedding: cached by fingerprint, computed (and cached) only when new."""
    fp = fingerprint(sql_text)
    cached = store.embeddings_for(conn, [fp]).get(fp)
    if cached is not None:
        return cached, True
    normalized = normalize(sql_text)
    vector = (embedder or Embedder()).embed_one(normalized)
    store.save_embeddings(conn, [(fp, normalized, MODEL_NAME, vector)])
    return vector, False


def usable_keys(sql_text: str) -> dict[str, set[str]] | None:
    """Per table, the normalized columns and expressions an index could be led by: predicates,
    join keys, ORDER BY and GROUP BY. None when the statement cannot be analysed."""
    try:
        shape = analyze(sql_text)
    except UnparseableQuery:
        return None
    keys: dict[str, set[str]] = {t: set() for t in shape.tables}
    for p in shape.predicates:
        keys.setdefault(p.table, set()).add(normalize_key(p.column))
    for j in shape.joins:
        keys.setdefault(j.left_table, set()).add(normalize_key(j.left_column))
        keys.setdefault(j.right_table, set()).add(normalize_key(j.right_column))
    for table, column in [*shape.order_by, *shape.group_by]:
        keys.setdefault(table, set()).add(normalize_key(column))
    return keys


def can_serve(keys: dict[str, set[str]] | None, row: dict, own_fingerprint: str) -> bool:
    """Whether the row's index could serve the statement: its table is read and its leading key is
    something the statement filters, joins, sorts or groups on, in the same form. A rewrite serves
    only its own statement."""
    if row.get("fingerprint") == own_fingerprint:
        return True
    index = parse_index_ddl(row["ddl"])
    if index is None or keys is None:
        return False
    wanted = keys.get(index.table)
    return bool(wanted) and bool(index.keys) and index.keys[0] in wanted


def nearest(conn: psycopg.Connection, sql_text: str, *, limit: int = 5,
            min_similarity: float = DEFAULT_MIN_SIMILARITY, target: str | None = None, history: bool = False,
            embedder: Embedder | None = None) -> dict:
    """{"rows": [...], "cached": bool}: neighbours at `min_similarity` or more, those whose index can
    serve the statement first, then realized gains, then similarity."""
    vector, cached = query_vector(conn, sql_text, embedder)
    own = fingerprint(sql_text)
    rows = store.similar_optimizations(conn, vector, limit=max(4 * limit, 20), target=target, history=history)
    keys = usable_keys(sql_text)
    out = []
    for row in rows:
        if row["similarity"] < min_similarity:
            continue
        row["serves"] = can_serve(keys, row, own)
        out.append(row)
    out.sort(key=lambda r: (not r["serves"], r.get("realized_gain") is None, -r["similarity"]))
    return {"rows": out[:limit], "cached": cached}


def search(conn: psycopg.Connection, sql_text: str, *, limit: int = 5,
           min_similarity: float = DEFAULT_MIN_SIMILARITY, target: str | None = None, history: bool = False,
           embedder: Embedder | None = None) -> dict:
    """`dbarch similar` as the command and its warm process both answer it: an unknown target is an
    error naming the known ones, then `nearest`."""
    if target:
        from . import targets

        targets.require_known(conn, target)
    return nearest(conn, sql_text, limit=limit, min_similarity=min_similarity, target=target, history=history,
                   embedder=embedder)
