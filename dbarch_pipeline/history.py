"""History: cumulative pg_stat_statements captures, and a window's activity as their differences.

pg_stat_statements counts from its last reset, and can be reset (wholly, per database, or one
statement at a time) or evict statements at any moment. A weekly audit therefore never reads "now":
an hourly capture stores the cumulative counters, and a week's activity is the sum, over consecutive
captures, of each statement's increase. When a counter goes down, a statement's `stats_since`
changes (PostgreSQL 17+) or pg_stat_statements_info's `stats_reset` moves, the statement was reset:
its increase restarts from zero at the reset, nothing goes negative, and the window notes it.

The window's baseline is the last capture at or before its start. Without one (a target's first
capture), counters are taken as they are, and the window says so: the first audit of a new target
is useful at once rather than empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg.rows import dict_row

from .capture import check_pg_stat_statements, is_catalog_query, read_counters
from .db import named
from .memory.fingerprint import fingerprint
from .models import SlowQuery, Thresholds

COUNTERS = ("calls", "total_exec_ms", "rows", "shared_blks_hit", "shared_blks_read")
TABLE_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del")


# -- capture ---------------------------------------------------------------------------------------

def capture(target_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
            now: datetime | None = None) -> dict:
    """Store the target's cumulative counters (statements and table writes) as one capture, under a
    name that is this database (a recreated database retires the name's old history first)."""
    from . import targets

    check_pg_stat_statements(target_conn)
    identity = targets.check_capture(store_conn, target_conn, target)
    captured_at = now or datetime.now(timezone.utc)
    with target_conn.cursor(row_factory=dict_row) as cur:
        info = cur.execute(named("select_pgss_info")).fetchone()
        tables = cur.execute(named("select_table_counters")).fetchall()
    statements = read_counters(target_conn)
    with store_conn.transaction():
        capture_id = store_conn.execute(named("insert_pgss_capture"), {
            "target": target, "captured_at": captured_at, "stats_reset": info["stats_reset"],
            "dealloc": info["dealloc"], "max_entries": info["max_entries"], "entries": info["entries"],
            "db_stats_reset": info["db_stats_reset"], "system_identifier": identity["of"].system_identifier,
            "database_oid": identity["of"].database_oid,
        }).fetchone()[0]
        with store_conn.cursor().copy(named("copy_pgss_capture_row")) as copy:
            for s in statements:
                copy.write_row((capture_id, s["queryid"], s["query"], s["calls"], s["total_exec_ms"], s["rows"],
                                s["shared_blks_hit"], s["shared_blks_read"], s["stats_since"]))
        with store_conn.cursor().copy(named("copy_table_capture")) as copy:
            for t in tables:
                copy.write_row((capture_id, t["table_name"], t["n_tup_ins"], t["n_tup_upd"], t["n_tup_hot_upd"],
                                t["n_tup_del"]))
    return {"capture_id": capture_id, "captured_at": captured_at.isoformat(), "statements": len(statements),
            "identity": identity["identity"], **({"retired_history": identity["retired"]} if identity["retired"] else {}),
            "tables": len(tables), "entries": info["entries"], "max_entries": info["max_entries"],
            "dealloc": info["dealloc"]}


# -- a window's activity -----------------------------------------------------------------------------

@dataclass
class Activity:
    """What happened in a window, from the captures alone."""

    window_start: datetime
    window_end: datetime
    captures: int = 0
    baseline: bool = False                  # a capture at or before the window's start exists
    statements: dict[int, dict] = field(default_factory=dict)   # queryid -> summed increases + text
    tables: dict[str, dict] = field(default_factory=dict)       # table -> {"rows", "seconds"}
    resets: list[dict] = field(default_factory=list)            # what restarted, and when
    covered_seconds: float = 0.0
    entries: int = 0
    max_entries: int = 0
    deallocations: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.captures == 0:
            out.append("no capture in this window: nothing to audit")
        elif not self.baseline:
            out.append("no capture before the window: counters are taken since the statistics started")
        full = [r for r in self.resets if r["kind"] == "stats_reset"]
        if full:
            out.append(f"pg_stat_statements was reset at {full[0]['at']}: activity counted from the reset")
        if any(r["kind"] == "statement" for r in self.resets):
            n = sum(1 for r in self.resets if r["kind"] == "statement")
            out.append(f"{n} statement(s) were reset or evicted and came back: counted from their restart")
        if self.deallocations:
            out.append(f"{self.deallocations} statement(s) evicted (pg_stat_statements.max reached)")
        return out


def activity(store_conn: psycopg.Connection, *, target: str, window_start: datetime, window_end: datetime
             ) -> Activity:
    with store_conn.cursor(row_factory=dict_row) as cur:
        caps = cur.execute(named("select_captures_in_window"), {
            "target": target, "window_start": window_start, "window_end": window_end}).fetchall()
        ids = [c["capture_id"] for c in caps]
        rows = cur.execute(named("select_capture_rows"), {"capture_ids": ids}).fetchall() if ids else []
        trows = cur.execute(named("select_table_capture_rows"), {"capture_ids": ids}).fetchall() if ids else []
    by_capture: dict[int, dict[int, dict]] = {}
    for r in rows:
        by_capture.setdefault(r["capture_id"], {})[r["queryid"]] = r
    tables_by_capture: dict[int, dict[str, dict]] = {}
    for r in trows:
        tables_by_capture.setdefault(r["capture_id"], {})[r["table_name"]] = r
    return compute_activity(caps, by_capture, tables_by_capture, window_start, window_end)


def compute_activity(caps: list[dict], rows: dict[int, dict[int, dict]], tables: dict[int, dict[str, dict]],
                     window_start: datetime, window_end: datetime) -> Activity:
    """The pure part: sum each statement's increases over consecutive captures, restarting at resets."""
    act = Activity(window_start=window_start, window_end=window_end)
    if not caps:
        return act
    baseline = caps[0] if caps[0]["captured_at"] <= window_start else None
    act.baseline = baseline is not None
    in_window = caps[1:] if baseline else caps
    act.captures = len(in_window)
    if not in_window:
        return act
    last = in_window[-1]
    act.entries, act.max_entries = last["entries"], last["max_entries"] or 0
    start_time = baseline["captured_at"] if baseline else None

    prev_cap = baseline
    seen: dict[int, dict] = dict(rows.get(baseline["capture_id"], {})) if baseline else {}
    seen_tables: dict[str, dict] = dict(tables.get(baseline["capture_id"], {})) if baseline else {}
    for cap in in_window:
        full_reset = prev_cap is not None and cap["stats_reset"] != prev_cap["stats_reset"]
        if full_reset:
            # activity between the previous capture and the reset was never captured
            gap = (cap["stats_reset"] - prev_cap["captured_at"]).total_seconds() if cap["stats_reset"] else None
            act.resets.append({"kind": "stats_reset", "at": cap["stats_reset"].isoformat() if cap["stats_reset"]
                               else None, "previous_capture_at": prev_cap["captured_at"].isoformat(),
                               "uncaptured_seconds": gap})
        if prev_cap is not None and cap["dealloc"] is not None and prev_cap["dealloc"] is not None:
            act.deallocations += max(0, cap["dealloc"] - prev_cap["dealloc"])
        previous = set(rows.get(prev_cap["capture_id"], {})) if prev_cap is not None else set()
        for qid, cur in rows.get(cap["capture_id"], {}).items():
            prev = seen.get(qid)
            # gone from the previous capture and back now: evicted or reset in between
            restarted = prev is not None and (
                full_reset or qid not in previous or cur["calls"] < prev["calls"]
                or (cur["stats_since"] is not None and prev["stats_since"] is not None
                    and cur["stats_since"] != prev["stats_since"]))
            if restarted and not full_reset:
                since = cur["stats_since"]   # PostgreSQL 17+: when this statement's counters restarted
                act.resets.append({
                    "kind": "statement", "queryid": qid,
                    "at": (since or cap["captured_at"]).isoformat(),
                    "previous_capture_at": prev_cap["captured_at"].isoformat() if prev_cap else None,
                    "uncaptured_seconds": (since - prev_cap["captured_at"]).total_seconds()
                    if since is not None and prev_cap is not None else None})
            acc = act.statements.setdefault(qid, {c: 0.0 for c in COUNTERS})
            for c in COUNTERS:
                acc[c] += cur[c] if prev is None or restarted else cur[c] - prev[c]
            acc["query_text"] = cur["query_text"]
            acc.setdefault("first_since", cur["stats_since"] or cap["captured_at"])
            seen[qid] = cur
        for name, cur in tables.get(cap["capture_id"], {}).items():
            prev = seen_tables.get(name)
            restarted = prev is not None and any(cur[c] < prev[c] for c in TABLE_COUNTERS)
            acc = act.tables.setdefault(name, {c: 0 for c in TABLE_COUNTERS})
            for c in TABLE_COUNTERS:
                acc[c] += cur[c] if prev is None or restarted else cur[c] - prev[c]
            seen_tables[name] = cur
        prev_cap = cap
    if start_time is None:
        # no baseline: counting started at the earliest statement's stats_since (PostgreSQL 17+) that
        # precedes the last capture, else at the window's first capture; never before the window
        since = [st["first_since"] for st in act.statements.values() if st["first_since"] <= last["captured_at"]]
        start_time = max(min(since) if since else in_window[0]["captured_at"], window_start)
    first = start_time
    act.covered_seconds = max(1.0, (last["captured_at"] - first).total_seconds())
    # table counters without a baseline run from the database's statistics reset (a bulk load
    # before the window is then spread over all that time, not counted as this window's traffic)
    table_start = baseline["captured_at"] if baseline else (in_window[0].get("db_stats_reset") or first)
    table_seconds = max(1.0, (last["captured_at"] - min(table_start, first)).total_seconds())
    for acc in act.tables.values():
        acc["rows"] = int(acc["n_tup_ins"] + acc["n_tup_del"] + acc["n_tup_upd"] - acc["n_tup_hot_upd"])
        acc["seconds"] = table_seconds
    return act


def slow_queries(act: Activity, thresholds: Thresholds) -> tuple[list[SlowQuery], dict]:
    """The window's top statements by total time above the thresholds."""
    out: list[SlowQuery] = []
    skipped = {"catalog": 0}
    # one statement can hold several queryids (psycopg binds an int as int2, int4 or int8 by its
    # value, and pg_stat_statements keeps one entry per parameter type): merge them by fingerprint
    merged: dict[str, tuple[int, dict]] = {}
    for qid, s in sorted(act.statements.items(), key=lambda kv: -kv[1]["total_exec_ms"]):
        fp = fingerprint(s["query_text"])
        if fp in merged:
            acc = merged[fp][1]
            for c in COUNTERS:
                acc[c] += s[c]
        else:
            merged[fp] = (qid, {**s})
    ranked = sorted(merged.values(), key=lambda kv: -kv[1]["total_exec_ms"])
    for qid, s in ranked:
        calls = int(s["calls"])
        if calls < thresholds.min_calls or calls <= 0:
            continue
        mean = s["total_exec_ms"] / calls
        if mean < thresholds.min_mean_ms:
            continue
        if is_catalog_query(s["query_text"]):
            skipped["catalog"] += 1
            continue
        if len(out) >= thresholds.top_n:
            break
        out.append(SlowQuery(
            queryid=qid, query_text=s["query_text"], fingerprint=fingerprint(s["query_text"]), calls=calls,
            total_exec_ms=float(s["total_exec_ms"]), mean_exec_ms=mean, rows=int(s["rows"]),
            shared_blks_hit=int(s["shared_blks_hit"]), shared_blks_read=int(s["shared_blks_read"]),
            captured_at=act.window_end, window_seconds=act.covered_seconds))
    return out, skipped
