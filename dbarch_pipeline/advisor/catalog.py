"""What the target's catalog says about a table: size, columns, indexes, column statistics.

A table never analyzed (pg_class.reltuples = -1) and a partitioned table (no storage of its own)
have no row count in pg_class: their rows are the planner's own estimate for a scan of the table
(from the size of its files, or the sum over its partitions), so they are sized, not skipped. A
partitioned table nobody analyzed (autovacuum never does) takes its largest partition's column
statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..db import named


@dataclass(frozen=True)
class ExistingIndex:
    name: str
    method: str
    keys: tuple[str, ...]   # column names, or expressions as pg_get_indexdef renders them
    is_unique: bool
    is_partial: bool
    definition: str
    include: tuple[str, ...] = ()


@dataclass
class TableInfo:
    schema: str
    table: str
    oid: int
    reltuples: int
    relpages: int
    total_bytes: int
    columns: list[str]
    indexes: list[ExistingIndex] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)         # column -> format_type
    collation: str = ""
    n_distinct: dict[str, float] = field(default_factory=dict)  # column -> pg_stats n_distinct
    null_frac: dict[str, float] = field(default_factory=dict)
    avg_width: dict[str, int] = field(default_factory=dict)
    mcv: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # most common (value, freq)

    collations: dict[str, str] = field(default_factory=dict)    # column -> collation name
    relkind: str = "r"                 # r table, p partitioned table, m materialized view
    trigram: bool = False              # pg_trgm installed, gin_trgm_ops visible on the search_path
    rows_from: str = "pg_class.reltuples"   # where reltuples came from

    def c_collation(self, column: str) -> bool:
        """True when LIKE 'prefix%' can use a plain btree on the column (C or POSIX collation)."""
        name = self.collations.get(column, "default")
        if name == "default":
            return self.collation in ("C", "POSIX", "b")   # builtin collations sort by code point
        return name in ("C", "POSIX")

    def distinct(self, column: str) -> float:
        """Estimated distinct values (pg_stats' negative n_distinct is a fraction of the rows)."""
        nd = self.n_distinct.get(column)
        if nd is None:
            return 0.0
        return -nd * max(self.reltuples, 1) if nd < 0 else nd


class Catalog:
    """Caches table information for one audit on one connection."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._tables: dict[tuple[str, str], TableInfo | None] = {}
        self.expression_checks: dict[tuple[str, str, str], bool] = {}   # (schema, table, expr) -> indexable
        self._trigram: bool | None = None

    def table(self, name: str, schema: str = "") -> TableInfo | None:
        key = (schema, name)
        if key not in self._tables:
            self._tables[key] = self._load(name, schema)
        return self._tables[key]

    def _load(self, name: str, schema: str) -> TableInfo | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(named("select_table_info"), {"table": name, "schema": schema}).fetchone()
            if row is None:
                return None
            info = TableInfo(schema=row["schema"], table=row["table"], oid=row["oid"],
                             reltuples=row["reltuples"], relpages=row["relpages"],
                             total_bytes=row["total_bytes"], columns=list(row["columns"]),
                             types=dict(zip(row["columns"], row["types"])), collation=row["collation"] or "",
                             collations=dict(zip(row["columns"], row["collations"])), relkind=row["relkind"])
            if row["never_analyzed"] or row["relkind"] == "p":
                info.reltuples = self._planner_rows(info)
                info.rows_from = ("planner estimate: partitioned table" if row["relkind"] == "p"
                                  else "planner estimate: never analyzed")
            for ix in cur.execute(named("select_table_indexes"), {"oid": info.oid}).fetchall():
                info.indexes.append(ExistingIndex(
                    name=ix["name"], method=ix["method"], keys=tuple(_unquote(k) for k in ix["keys"]),
                    is_unique=ix["is_unique"], is_partial=ix["is_partial"], definition=ix["definition"],
                    include=tuple(_unquote(k) for k in ix["include"])))
            stats = cur.execute(named("select_column_stats"), {"schema": info.schema, "table": info.table}).fetchall()
            if not stats and info.relkind == "p":
                leaf = cur.execute(named("select_largest_partition"), {"oid": info.oid}).fetchone()
                if leaf is not None:
                    stats = cur.execute(named("select_column_stats"), leaf).fetchall()
            info.trigram = self.trigram()
            for st in stats:
                info.n_distinct[st["column"]] = float(st["n_distinct"] or 0.0)
                info.null_frac[st["column"]] = float(st["null_frac"] or 0.0)
                info.avg_width[st["column"]] = int(st["avg_width"] or 0)
                if st["mcv"] and st["mcf"]:
                    info.mcv[st["column"]] = list(zip(st["mcv"], map(float, st["mcf"])))
        return info

    def trigram(self) -> bool:
        """Whether the target has pg_trgm with its GIN operator class on the search_path (dbarch never
        installs an extension: that would change the target's schema)."""
        if self._trigram is None:
            self._trigram = bool(self.conn.execute(named("select_trigram_opclass")).fetchone()[0])
        return self._trigram

    def _planner_rows(self, info: TableInfo) -> int:
        """The rows the planner expects a full scan of the table to return (no execution)."""
        query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}.{}").format(
            sql.Identifier(info.schema), sql.Identifier(info.table))
        try:
            with self.conn.transaction(force_rollback=True):
                doc = self.conn.execute(query).fetchone()[0]
        except psycopg.Error:
            return 0
        doc = doc[0] if isinstance(doc, list) else doc
        return int(doc["Plan"]["Plan Rows"])

    def columns_map(self, tables: list[str], schemas: dict[str, str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for t in tables:
            info = self.table(t, schemas.get(t, ""))
            if info is not None:
                out[t] = set(info.columns)
        return out


def _unquote(key: str) -> str:
    """pg_get_indexdef quotes identifiers that need it ("timestamp"); compare on bare names."""
    if len(key) >= 2 and key[0] == '"' and key[-1] == '"':
        return key[1:-1].replace('""', '"')
    return key.replace('"', "")
