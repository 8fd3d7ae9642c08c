"""Watching between audits: new slow statements, recommendations that got applied (and what they
really gained), and failed runs worth an alert. Plain functions; the sensors in defs/sensors.py
only call them.

- Spikes. pg_stat_statements is read live with the audit thresholds; a fingerprint that was never
  seen crossing them is new. The cursor remembers, per target, the fingerprints seen (bounded, the
  oldest forgotten first), and a run key built from the new fingerprints makes a repeated
  evaluation request nothing twice.
- Applied optimizations. A proposed recommendation counts as applied when its index exists on the
  target, by name or by an equivalent definition (someone may have created it under another name:
  same table, method, key columns in order, operator classes and predicate, and at least its
  INCLUDE columns), or when its pull request was merged. Creation time is not in the catalogs, so
  the moment it was noticed is recorded.
- Realized gain. The statement's mean time in the week before `applied_at` against its mean time
  after, both from the stored captures. The "after" window starts at the first capture after
  `applied_at`, not at `applied_at` itself: the increase up to that capture mixes calls made before
  the index with calls made after it, and would understate the gain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable

import psycopg
from psycopg.rows import dict_row

from . import history
from .capture import fetch_slow_queries
from .db import named
from .errors import DbarchError
from .memory import store
from .memory.fingerprint import fingerprint
from .models import Thresholds

ALERT_WEBHOOK_ENV = "DBARCH_ALERT_WEBHOOK_URL"
ALERT_TIMEOUT_S = 5.0
MAX_FINGERPRINTS_PER_TARGET = 500     # keeps the cursor small; the oldest are forgotten first
MIN_CALLS_AFTER = 5
BEFORE_WINDOW = timedelta(days=7)

# the fallback lookup by fingerprint parses every statement of a window; the texts repeat across ticks
_fingerprint = functools.lru_cache(maxsize=8192)(fingerprint)


# -- slow-query spikes ------------------------------------------------------------------------------

def parse_cursor(text: str | None) -> dict[str, list[str]]:
    """The spike cursor, `{target: [fingerprints seen crossing the thresholds]}`; empty when unset or
    unreadable (a damaged cursor costs one extra run, never a crash)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(f) for f in v] for k, v in data.items() if isinstance(v, list)}


def dump_cursor(seen: dict[str, list[str]], targets: Iterable[str] | None = None) -> str:
    """The cursor as JSON, keeping only the given targets (those still registered) when named."""
    keep = set(targets) if targets is not None else set(seen)
    return json.dumps({t: seen[t] for t in sorted(seen) if t in keep}, separators=(",", ":"))


def new_fingerprints(seen: Iterable[str], current: Iterable[str]) -> list[str]:
    """The fingerprints crossing the thresholds now that were never seen before, sorted."""
    known = set(seen)
    return sorted({fp for fp in current if fp not in known})


def remember(seen: dict[str, list[str]], target: str, fingerprints: Iterable[str],
             limit: int = MAX_FINGERPRINTS_PER_TARGET) -> dict[str, list[str]]:
    """A new cursor with the target's fingerprints appended (oldest dropped beyond `limit`)."""
    known = list(seen.get(target, []))
    present = set(known)
    for fp in fingerprints:
        if fp not in present:
            known.append(fp)
            present.add(fp)
    return {**seen, target: known[-limit:]}


def spike_run_key(target: str, week: str, fingerprints: Iterable[str]) -> str:
    """Stable for the same target, week and set of new statements: Dagster launches a run key once."""
    digest = hashlib.sha256("\n".join(sorted(fingerprints)).encode()).hexdigest()[:16]
    return f"spike-{target}-{week}-{digest}"


def slow_fingerprints(conn: psycopg.Connection, thresholds: Thresholds) -> list[str]:
    """Fingerprints of the target's statements above the thresholds right now (pg_stat_statements)."""
    queries, _skipped = fetch_slow_queries(conn, thresholds)
    return [q.fingerprint for q in queries]


def audited_fingerprints(store_conn: psycopg.Connection, target: str, partition_key: str) -> list[str]:
    """The statements the week's stored audit already judged slow: not news for the spike sensor."""
    snap = store.latest_snapshot(store_conn, target, partition_key)
    return [q.fingerprint for q in store.snapshot_queries(store_conn, snap["snapshot_id"])] if snap else []


@dataclass(frozen=True)
class Spike:
    target: str
    week: str
    fingerprints: tuple[str, ...]

    @property
    def run_key(self) -> str:
        return spike_run_key(self.target, self.week, self.fingerprints)


def find_spike(seen: dict[str, list[str]], target: str, week: str, current: Iterable[str]) -> Spike | None:
    new = new_fingerprints(seen.get(target, []), current)
    return Spike(target, week, tuple(new)) if new else None


# -- applied optimizations --------------------------------------------------------------------------

_IDENT = r'"(?:[^"]|"")+"|[A-Za-z_][\w$]*'
_CREATE_INDEX = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_IDENT})"
    rf"\s+ON\s+(?:ONLY\s+)?(?:(?P<schema>{_IDENT})\.)?(?P<table>{_IDENT})"
    rf"(?:\s+USING\s+(?P<method>\w+))?\s*\((?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class IndexDefinition:
    """What identifies an index for the sensor: where it is, its name, and what it can serve."""

    schema: str
    table: str
    name: str
    method: str
    keys: tuple[str, ...]                        # normalized expressions (see normalize_key)
    opclasses: tuple[str, ...] = ()              # per key: the operator class, '' for the default
    include: frozenset[str] = frozenset()
    predicate: str = ""                          # normalized partial-index predicate, '' for none
    default_opclasses: tuple[bool, ...] = ()     # from the catalog: is each key's class the default

    def serves_as(self, wanted: "IndexDefinition") -> bool:
        """True when this (existing) index is the recommended one under another name: same table,
        method, key expressions in order, operator classes and predicate, and at least its INCLUDE
        columns. An index that lacks the INCLUDE columns or the operator class of the recommendation
        does not give the plan that was measured."""
        if (self.schema, self.table, self.method, self.keys, self.predicate) != (
                wanted.schema, wanted.table, wanted.method, wanted.keys, wanted.predicate):
            return False
        if not wanted.include <= self.include:
            return False
        for i, want in enumerate(wanted.opclasses or ("",) * len(wanted.keys)):
            have = self.opclasses[i] if i < len(self.opclasses) else ""
            have_default = self.default_opclasses[i] if i < len(self.default_opclasses) else not have
            if not (want == have or (not want and have_default)):
                return False
        return True


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident.lower()


def _split_top_level(text: str) -> tuple[list[str], str]:
    """Split `a, (b), c) rest` at top-level commas up to the closing parenthesis; returns the items
    and what follows the parenthesis."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote   # a doubled quote closes and reopens: same result
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                items.append(text[start:i])
                return [s.strip() for s in items if s.strip()], text[i + 1:]
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [s.strip() for s in items + [text[start:]] if s.strip()], ""


_OPCLASS = re.compile(r"\s+(\w+_ops)$")


def normalize_key(key: str) -> str:
    """One index key expression as comparable text: no quotes, casts, parentheses, operator class
    or case.

    >>> normalize_key('lower((email)::text)') == normalize_key('(lower("email"))')
    True
    >>> normalize_key('"email" text_pattern_ops')
    'email'
    """
    key = _OPCLASS.sub("", key.strip())
    key = re.sub(r"::[\w ]+", "", key)                   # pg_get_indexdef adds casts
    return re.sub(r'[\s"()]', "", key).lower()


def normalize_predicate(text: str) -> str:
    """A partial index's WHERE as comparable text (casts, quotes around names and parentheses go).

    >>> normalize_predicate('(amount > (100)::numeric)') == normalize_predicate('"amount" > 100')
    True
    """
    text = re.sub(r"::[\w ]+", "", text.strip())
    return re.sub(r'[\s"()]', "", text)


def parse_index_ddl(ddl: str) -> IndexDefinition | None:
    """The index a recommendation's CREATE INDEX would create; None when it is not one.

    >>> d = parse_index_ddl('CREATE INDEX "orders_customer_id_idx" ON "public"."orders" ("customer_id")')
    >>> (d.schema, d.table, d.name, d.method, d.keys)
    ('public', 'orders', 'orders_customer_id_idx', 'btree', ('customer_id',))
    """
    m = _CREATE_INDEX.match(ddl)
    if m is None:
        return None
    keys, rest = _split_top_level(m.group("rest"))
    include: list[str] = []
    inc = re.match(r"\s*INCLUDE\s*\((.*)$", rest, re.IGNORECASE | re.DOTALL)
    if inc:
        include, rest = _split_top_level(inc.group(1))
    where = re.match(r"\s*WHERE\s+(.*?)\s*;?\s*$", rest, re.IGNORECASE | re.DOTALL)
    opclasses = tuple((_OPCLASS.search(k).group(1) if _OPCLASS.search(k) else "") for k in keys)
    return IndexDefinition(
        schema=_unquote(m.group("schema")) if m.group("schema") else "public",
        table=_unquote(m.group("table")), name=_unquote(m.group("name")),
        method=(m.group("method") or "btree").lower(), keys=tuple(normalize_key(k) for k in keys),
        opclasses=opclasses if any(opclasses) else (),
        include=frozenset(normalize_key(c) for c in include),
        predicate=normalize_predicate(where.group(1)) if where else "")


def target_indexes(conn: psycopg.Connection, tables: Iterable[str]) -> list[IndexDefinition]:
    """The valid indexes of the named tables on the target (every schema)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(named("watch_select_target_indexes"), {"tables": sorted(set(tables))}).fetchall()
    return [IndexDefinition(
        schema=r["schema_name"], table=r["table_name"], name=r["index_name"], method=r["method"],
        keys=tuple(normalize_key(k) for k in r["keys"]), opclasses=tuple(r["opclasses"]),
        default_opclasses=tuple(r["default_opclasses"]), include=frozenset(normalize_key(c) for c in r["include"]),
        predicate=normalize_predicate(r["predicate"])) for r in rows]


def applied_how(wanted: IndexDefinition, existing: Iterable[IndexDefinition]) -> str | None:
    """'index name' or 'equivalent index <name>' when an existing index is the recommended one."""
    existing = list(existing)
    for ix in existing:
        if (ix.schema, ix.table, ix.name) == (wanted.schema, wanted.table, wanted.name):
            return "index name"
    for ix in existing:
        if ix.serves_as(wanted):
            return f"equivalent index {ix.name}"
    return None


def detect_applied(store_conn: psycopg.Connection,
                   connect_target: Callable[[str], AbstractContextManager[psycopg.Connection]], *,
                   now: datetime, targets: Iterable[str] | None = None) -> dict:
    """Mark the proposed rows whose index now exists on their target, or whose pull request was
    merged, as applied at `now`. Only the named `targets` (the configured ones) are connected to;
    rows of other targets, and of unreachable ones, wait for next time (a merged pull request needs
    no connection)."""
    known = set(targets) if targets is not None else None
    by_target: dict[str, list[dict]] = defaultdict(list)
    for row in store.proposed_optimizations(store_conn):
        by_target[row["target"]].append(row)
    found: list[dict] = []
    unreachable: dict[str, str] = {}
    unconfigured: list[str] = []
    for target, rows in by_target.items():
        pending = []
        for row in rows:
            if row.get("pr_state") == "merged":
                found.append({**_brief(row), "how": "pull request merged"})
            elif (wanted := parse_index_ddl(row["ddl"])) is not None:
                pending.append((row, wanted))
        if not pending:
            continue
        if known is not None and target not in known:
            unconfigured.append(target)
            continue
        try:
            with connect_target(target) as conn:
                existing = target_indexes(conn, {w.table for _, w in pending})
        except DbarchError as exc:
            unreachable[target] = exc.problem
            continue
        except psycopg.Error as exc:   # reachable, but the connection or the catalog query failed
            unreachable[target] = str(exc).strip() or type(exc).__name__
            continue
        for row, wanted in pending:
            how = applied_how(wanted, existing)
            if how:
                found.append({**_brief(row), "how": how})
    moved = set(store.mark_applied(store_conn, [f["id"] for f in found], now))
    return {"applied": [f for f in found if f["id"] in moved], "unreachable": unreachable,
            "unconfigured": sorted(unconfigured), "proposed": sum(len(r) for r in by_target.values())}


def _brief(row: dict) -> dict:
    return {"id": row["id"], "target": row["target"], "ddl": row["ddl"]}


# -- realized gains ---------------------------------------------------------------------------------

def statement_in(act: history.Activity, queryid: int | None, fp: str | None) -> dict | None:
    """The statement's summed counters in a window, by queryid, else by fingerprint (a queryid can
    change, e.g. across a major upgrade; the fingerprint does not)."""
    if queryid is not None and queryid in act.statements:
        return act.statements[queryid]
    if fp:
        for s in act.statements.values():
            if _fingerprint(s["query_text"]) == fp:
                return s
    return None


def compute_realized_gain(before: dict | None, after: dict | None, *,
                          min_calls_after: int = MIN_CALLS_AFTER) -> dict | None:
    """Percent by which the mean time fell, with the means and calls; None while the evidence is
    too thin (no calls before, fewer than `min_calls_after` after). Negative means it got slower.

    >>> compute_realized_gain({"calls": 10, "total_exec_ms": 100.0}, {"calls": 5, "total_exec_ms": 5.0})
    {'realized_gain': 90.0, 'mean_ms_before': 10.0, 'mean_ms_after': 1.0, 'calls_before': 10, 'calls_after': 5}
    """
    if not before or not after or before["calls"] < 1 or after["calls"] < min_calls_after:
        return None
    mean_before = before["total_exec_ms"] / before["calls"]
    mean_after = after["total_exec_ms"] / after["calls"]
    if mean_before <= 0:
        return None
    return {"realized_gain": round((mean_before - mean_after) / mean_before * 100.0, 2),
            "mean_ms_before": round(mean_before, 4), "mean_ms_after": round(mean_after, 4),
            "calls_before": int(before["calls"]), "calls_after": int(after["calls"])}


def realize_gains(store_conn: psycopg.Connection, *, now: datetime,
                  min_calls_after: int = MIN_CALLS_AFTER) -> list[dict]:
    """Record the realized gain of every applied row whose target has enough captures since."""
    out = []
    for row in store.unrealized_optimizations(store_conn):
        applied, first_after = row["applied_at"], row["first_capture_after"]
        before = history.activity(store_conn, target=row["target"], window_start=applied - BEFORE_WINDOW,
                                  window_end=applied)
        # the first capture after applied_at is the baseline: only later increases are post-index
        after = history.activity(store_conn, target=row["target"], window_start=first_after, window_end=now)
        gain = compute_realized_gain(statement_in(before, row["queryid"], row["fingerprint"]),
                                     statement_in(after, row["queryid"], row["fingerprint"]),
                                     min_calls_after=min_calls_after)
        if gain is None:
            continue
        store.record_realized_gain(store_conn, row["id"], gain["realized_gain"], now)
        out.append({"id": row["id"], "target": row["target"], "ddl": row["ddl"], **gain})
    return out


# -- run-failure alerts -----------------------------------------------------------------------------

def failure_alert(*, run_id: str, job: str, partition: str | None, error: str | None, step: str | None) -> dict:
    """The structured alert of a failed run (logged, and posted to the webhook when configured)."""
    return {"event": "dagster_run_failure", "run_id": run_id, "job": job, "partition": partition,
            "step": step, "error": error}


def post_json(url: str, payload: dict, *, timeout: float = ALERT_TIMEOUT_S) -> str | None:
    """POST the payload as JSON; returns None on success, else the problem (never raises: an alert
    that cannot be delivered must not turn into a second failure)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "dbarch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"webhook answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"webhook unreachable: {getattr(exc, 'reason', exc)}"
    return None
