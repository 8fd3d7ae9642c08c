"""Existing indexes worth dropping, each with the evidence for it. dbarch only reports them.

Three kinds, strongest first, each index reported once:

- duplicate: another index on the same table has the same method, keys (with operator classes,
  collations and order), INCLUDE columns and predicate; the one kept is the one that enforces
  something (primary key, constraint, uniqueness), else the first by name.
- covered: a plain btree whose keys are a strict leading prefix of another btree's keys, say (a)
  beside (a, b): every lookup on a can use the wider index.
- unused: never scanned since the statistics were last reset.

Indexes that enforce something (primary keys, unique indexes, indexes behind a constraint, including
the unique index a foreign key references, and the replica identity) are never reported as unused
or covered; a unique index is reported as a duplicate only of another unique index, so the
uniqueness stays enforced. An index that another recommendation keeps in place of the dropped one
is not reported unused when the dropped one had scans, since those scans would move to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..db import named

DropKind = Literal["unused", "duplicate", "covered"]

REPLICA_CAVEAT = ("idx_scan counts scans on this server only: reads served by a replica are not "
                  "counted, so check pg_stat_user_indexes on every replica before dropping")
BARE_COLUMN = re.compile(r'^(\w+|"(?:[^"]|"")+")$')


@dataclass(frozen=True)
class IndexUsage:
    """One index of the target as select_index_usage reports it."""

    schema: str
    table: str
    index: str
    method: str
    keys: tuple[str, ...]             # columns, or expressions as pg_get_indexdef renders them
    include: tuple[str, ...]
    key_classes: tuple[tuple[int, int, int], ...]  # (opclass, collation, options) per key
    is_unique: bool
    is_primary: bool
    backs_constraint: bool
    is_replica_identity: bool
    is_partial: bool
    predicate: str | None
    is_valid: bool
    idx_scan: int | None              # None when the statistics have no entry for it
    size_bytes: int
    table_writes: int | None          # rows inserted, updated (not HOT) or deleted since the reset
    stats_reset: datetime | None      # None when the database's statistics were never reset
    definition: str
    body: str                         # the definition after "INDEX <name> ON "

    @property
    def enforces(self) -> bool:
        """Something breaks (or a constraint must go first) if this index is dropped."""
        return self.is_primary or self.backs_constraint or self.is_replica_identity


@dataclass(frozen=True)
class DropRecommendation:
    schema: str
    table: str
    index: str
    kind: DropKind
    ddl: str
    size_bytes: int
    reason: str
    evidence: dict


def index_usage(conn: psycopg.Connection) -> list[IndexUsage]:
    """Every index of the current database's user tables (dbarch's own schema aside)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("select_index_usage")).fetchall()
    return [IndexUsage(
        schema=r["schema"], table=r["table"], index=r["index"], method=r["method"],
        keys=tuple(r["keys"]), include=tuple(r["include"]),
        key_classes=tuple(zip(r["key_opclasses"], r["key_collations"], r["key_options"])),
        is_unique=r["is_unique"], is_primary=r["is_primary"], backs_constraint=r["backs_constraint"],
        is_replica_identity=r["is_replica_identity"], is_partial=r["is_partial"],
        predicate=r["predicate"], is_valid=r["is_valid"], idx_scan=r["idx_scan"],
        size_bytes=r["size_bytes"], table_writes=r["table_writes"], stats_reset=r["stats_reset"],
        definition=r["definition"], body=r["body"],
    ) for r in rows]


def drop_recommendations(conn: psycopg.Connection, *, min_size_bytes: int = 0) -> list[DropRecommendation]:
    """Indexes to consider dropping, largest first. Reads the catalog and statistics only."""
    indexes = index_usage(conn)
    dropped: dict[tuple[str, str], tuple[DropKind, IndexUsage, IndexUsage | None]] = {}

    for ix, kept in _duplicates(indexes):
        dropped[_key(ix)] = ("duplicate", ix, kept)

    survivors = [ix for ix in indexes if _key(ix) not in dropped]
    for ix, covering in _covered(survivors):
        dropped[_key(ix)] = ("covered", ix, covering)

    # scans of an index dropped in favour of another would move to that other one
    inherits_scans = {_key(kept) for _, ix, kept in dropped.values()
                      if kept is not None and ix.idx_scan != 0}
    for ix in indexes:
        if (_key(ix) not in dropped and ix.idx_scan == 0 and not ix.is_unique and not ix.enforces
                and _key(ix) not in inherits_scans):
            dropped[_key(ix)] = ("unused", ix, None)

    out = [_recommendation(kind, ix, other) for kind, ix, other in dropped.values()
           if ix.size_bytes >= min_size_bytes]
    out.sort(key=lambda r: (-r.size_bytes, r.schema, r.table, r.index))
    return out


def drop_ddl(schema: str, index: str) -> str:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
        sql.Identifier(schema), sql.Identifier(index)).as_string(None)


def _duplicates(indexes: list[IndexUsage]) -> list[tuple[IndexUsage, IndexUsage]]:
    """(index to drop, identical index kept). Only valid indexes are compared: an invalid one is
    not used by the planner, and is left to the unused rule."""
    groups: dict[tuple[str, str, str], list[IndexUsage]] = {}
    for ix in indexes:
        if ix.is_valid:
            groups.setdefault((ix.schema, ix.table, ix.body), []).append(ix)
    out = []
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda ix: (not ix.is_primary, not ix.backs_constraint,
                                   not ix.is_replica_identity, not ix.is_unique, ix.index))
        kept = group[0]
        for ix in group[1:]:
            if not ix.enforces and (kept.is_unique or not ix.is_unique):
                out.append((ix, kept))
    return out


def _covered(indexes: list[IndexUsage]) -> list[tuple[IndexUsage, IndexUsage]]:
    """(index to drop, wider btree that serves the same lookups)."""
    coverers = {_key(ix): [c for c in indexes if _covers(c, ix)] for ix in indexes if _coverable(ix)}
    coverers = {k: v for k, v in coverers.items() if v}
    out = []
    for ix in indexes:
        candidates = coverers.get(_key(ix))
        if not candidates:
            continue
        # name the index that stays: one that is not itself covered by a still wider one
        staying = [c for c in candidates if _key(c) not in coverers] or candidates
        out.append((ix, min(staying, key=lambda c: (len(c.keys), c.index))))
    return out


def _coverable(ix: IndexUsage) -> bool:
    return (ix.method == "btree" and not ix.is_unique and not ix.enforces and not ix.is_partial)


def _covers(wide: IndexUsage, ix: IndexUsage) -> bool:
    n = len(ix.keys)
    return (wide is not ix and wide.schema == ix.schema and wide.table == ix.table
            and wide.method == "btree" and wide.is_valid and not wide.is_partial
            and len(wide.keys) > n and wide.keys[:n] == ix.keys
            and wide.key_classes[:n] == ix.key_classes
            # an index-only scan that read an INCLUDE column must still find it
            and set(ix.include) <= set(wide.keys) | set(wide.include))


def _recommendation(kind: DropKind, ix: IndexUsage, other: IndexUsage | None) -> DropRecommendation:
    evidence: dict = {
        "definition": ix.definition,
        "size_bytes": ix.size_bytes,
        "idx_scan": ix.idx_scan,
        "table_writes": ix.table_writes,
        "stats_reset": ix.stats_reset.isoformat() if ix.stats_reset else None,
        "is_valid": ix.is_valid,
    }
    where = f"{ix.schema}.{ix.table}"
    if kind == "duplicate":
        assert other is not None
        evidence["duplicate_of"] = other.index
        evidence["duplicate_of_definition"] = other.definition
        reason = (f"{ix.index} on {where} is identical to {other.index} (same method, keys, "
                  f"INCLUDE columns and predicate), so it serves no query the other cannot.")
    elif kind == "covered":
        assert other is not None
        evidence["covered_by"] = other.index
        evidence["covered_by_definition"] = other.definition
        reason = (f"{ix.index} on {where} ({', '.join(ix.keys)}) is a leading prefix of "
                  f"{other.index} ({', '.join(other.keys)}), which serves the same lookups.")
    else:
        caveats = [REPLICA_CAVEAT]
        if ix.stats_reset is None:
            caveats.append("the statistics were never reset: the count runs from when they began "
                           "(a crash or an immediate shutdown discards them)")
        if any(not BARE_COLUMN.match(k) for k in ix.keys):
            caveats.append("ANALYZE keeps statistics on an index expression, which the planner "
                           "uses for estimates even when it never scans the index")
        evidence["caveat"] = "; ".join(caveats)
        since = (f"since the statistics were reset on {ix.stats_reset:%Y-%m-%d}" if ix.stats_reset
                 else "since the statistics began")
        state = "is invalid (a failed CREATE INDEX CONCURRENTLY?) and " if not ix.is_valid else ""
        reason = (f"{ix.index} on {where} {state}has not been scanned {since}, yet every write "
                  f"to the table maintains it.")
    return DropRecommendation(schema=ix.schema, table=ix.table, index=ix.index, kind=kind,
                              ddl=drop_ddl(ix.schema, ix.index), size_bytes=ix.size_bytes,
                              reason=reason, evidence=evidence)


def _key(ix: IndexUsage) -> tuple[str, str]:
    return (ix.schema, ix.index)
