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


@dataclass(frozen=True)
class IndexCandidate:
    """A proposed btree index: `columns` are plain column names or safe expressions."""

    schema: str
    table: str
    columns: tuple[str, ...]
    reason: str
    expressions: tuple[bool, ...] = ()  # True where columns[i] is an expression such as lower(email)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    def label(self) -> str:
        return f"{self.qualified_table} ({', '.join(self.columns)})"


@dataclass
class Measurement:
    """Planner cost and clock time of one query under one index configuration."""

    generic_cost: float | None
    costs: list[float] = field(default_factory=list)           # per parameter set, planner total cost
    timings_ms: list[list[float]] = field(default_factory=list)  # per parameter set, each run
    buffers: list[int] = field(default_factory=list)          # per parameter set, shared blocks touched
    plan: dict | None = None                                  # plan of the first parameter set
    indexes_used: set[str] = field(default_factory=set)
