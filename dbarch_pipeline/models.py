"""Domain records shared by the plain modules (no Dagster here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Thresholds:
    """Which pg_stat_statements entries count as slow."""

    min_calls: int = 5
    min_mean_ms: float = 1.0
    top_n: int = 20


@dataclass(frozen=True)
class SlowQuery:
    queryid: int
    query_text: str
    fingerprint: str
    calls: int
    total_exec_ms: float
    mean_exec_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    captured_at: datetime
    window_seconds: float | None = None   # how long this statement's counters have been running

    def calls_per_second(self, fallback_window: float | None) -> float:
        window = self.window_seconds or fallback_window
        return self.calls / window if window and window > 0 else float(self.calls)


@dataclass(frozen=True)
class IndexCandidate:
    """A proposed index. `columns` are column names or immutable expressions such as lower(email)
    or md5(val); `opclasses` (parallel to columns, '' for the default) carry text_pattern_ops or
    jsonb_path_ops; `directions` (parallel to columns, '' for ASC) carry DESC / NULLS FIRST for an
    ORDER BY that mixes directions; `where` makes it a partial index on one equality (column, value
    as text), or on `column IS NOT NULL` (column, None)."""

    schema: str
    table: str
    columns: tuple[str, ...]
    reason: str
    method: str = "btree"
    opclasses: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    where: tuple[str, str | None] | None = None
    name: str | None = None   # set only when the generated name is taken on the target (bench.naming)
    directions: tuple[str, ...] = ()

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    def keys(self) -> list[str]:
        ops = self.opclasses or ("",) * len(self.columns)
        dirs = self.directions or ("",) * len(self.columns)
        return [" ".join(part for part in (c, o, d) if part) for c, o, d in zip(self.columns, ops, dirs)]

    def label(self) -> str:
        """Dexter-style: public.users (lower(email)), public.t USING gin (meta jsonb_path_ops) ..."""
        using = f" USING {self.method}" if self.method != "btree" else ""
        text = f"{self.qualified_table}{using} ({', '.join(self.keys())})"
        if self.include:
            text += f" INCLUDE ({', '.join(self.include)})"
        if self.where:
            text += (f" WHERE {self.where[0]} IS NOT NULL" if self.where[1] is None
                     else f" WHERE {self.where[0]} = '{self.where[1]}'")
        return text

    def to_spec(self) -> dict:
        return {"schema": self.schema, "table": self.table, "columns": list(self.columns),
                "reason": self.reason, "method": self.method, "opclasses": list(self.opclasses),
                "include": list(self.include), "where": list(self.where) if self.where else None,
                "directions": list(self.directions),
                **({"name": self.name} if self.name else {})}

    @classmethod
    def from_spec(cls, spec: dict) -> "IndexCandidate":
        return cls(schema=spec["schema"], table=spec["table"], columns=tuple(spec["columns"]),
                   reason=spec["reason"], method=spec.get("method", "btree"),
                   opclasses=tuple(spec.get("opclasses") or ()), include=tuple(spec.get("include") or ()),
                   where=tuple(spec["where"]) if spec.get("where") else None, name=spec.get("name"),
                   directions=tuple(spec.get("directions") or ()))


@dataclass
class Measurement:
    """Planner cost and clock time of one query under one index configuration."""

    generic_cost: float | None
    costs: list[float] = field(default_factory=list)           # per parameter set, planner total cost
    timings_ms: list[list[float]] = field(default_factory=list)  # per parameter set, each run
    buffers: list[int] = field(default_factory=list)          # per parameter set, shared blocks touched
    plan: dict | None = None                                  # plan of the first parameter set
    indexes_used: set[str] = field(default_factory=set)
