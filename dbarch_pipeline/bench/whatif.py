"""What-if costing with HypoPG, when the sandbox has it.

A hypothetical index costs nothing to build and is visible only to this session's planner, so every
candidate can be costed before any real index is built: candidates the planner would not use, or
that save too little, are screened out, and only the rest are built (inside the rolled-back
transaction) and timed. Hypothetical indexes live in the backend's memory and survive ROLLBACK, so
`hypopg_reset()` is always called before the transaction ends.

Many managed services offer HypoPG; the embedded server does not ship it, so there every candidate
is built for real.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import psycopg

from ..advisor.candidates import ddl_text
from ..db import tag, rolled_back
from ..models import IndexCandidate
from .measure import indexes_in
from .runner import plan_of

SCREEN_MIN_SAVING = 0.10   # a candidate must cut some statement's planner cost by 10% to be built


def hypopg_status(conn: psycopg.Connection) -> str:
    """'installed', 'available' (can be created inside an experiment's transaction) or 'missing'."""
    row = conn.execute(tag("SELECT installed_version FROM pg_available_extensions WHERE name = 'hypopg'")
                       ).fetchone()
    if row is None:
        return "missing"
    return "installed" if row[0] else "available"


@contextmanager
def hypothetical_index(conn: psycopg.Connection, cand: IndexCandidate, status: str) -> Iterator[str]:
    """Inside the caller's transaction: a hypothetical index for the candidate; yields its name."""
    if status == "available":
        # created inside the rolled-back transaction: the extension disappears with it
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    row = conn.execute(tag("SELECT indexname FROM hypopg_create_index(%s)"), (ddl_text(cand),)).fetchone()
    try:
        yield row[0]
    finally:
        conn.execute(tag("SELECT hypopg_reset()"))


def _cost(conn: psycopg.Connection, item) -> tuple[float, set[str]]:
    doc = plan_of(conn, item)
    return float(doc["Plan"]["Total Cost"]), indexes_in(doc)


def whatif(conn: psycopg.Connection, cand: IndexCandidate, items: Sequence, *, status: str,
           statement_timeout_ms: int, lock_timeout_ms: int) -> dict[int, dict]:
    """Planner cost of each statement without and with the hypothetical index (no data touched)."""
    out: dict[int, dict] = {}
    with rolled_back(conn, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms):
        before = {item.queryid: _cost(conn, item)[0] for item in items}
        with hypothetical_index(conn, cand, status) as name:
            for item in items:
                cost, used = _cost(conn, item)
                out[item.queryid] = {"cost_before": before[item.queryid], "cost_after": cost,
                                     "used": name in used}
    return out


def worth_building(costs: dict[int, dict]) -> bool:
    return any(c["used"] and c["cost_before"] > 0 and
               (c["cost_before"] - c["cost_after"]) / c["cost_before"] >= SCREEN_MIN_SAVING
               for c in costs.values())
