"""Statement texts sampled from pg_stat_activity: the constants pg_stat_statements turned into `$n`.

pg_stat_statements keeps `substr(code, $2, $3) = $1`; an index on the expression needs the 1 and
the 8. While a statement runs, PostgreSQL itself shows its text as the client sent it in
`pg_stat_activity.query` (literals included; bound parameters stay `$k`), and `query_id`
(compute_query_id, on with pg_stat_statements) names its pg_stat_statements entry. The sampler reads
the active client sessions of the target's database every `interval` seconds for `seconds`, and keeps
a bounded, recent sample of distinct texts per (target, query_id) in the store
(`dbarch.activity_sample`). The audit lines each text up with pg_stat_statements' (observed.py
`literal_constants`) and gives the constants back to the expression exactly as it does with a
logged text (params.py `inline_constants`): one mechanism, two sources, the evidence names which.

Only statements running when a sample is taken are seen: a statement of 300 ms run every few seconds
is caught within minutes, one of 2 ms rarely. The texts can hold personal data (a literal the
application wrote into its SQL), so they follow the observed values' rules: the same switch
(`DBARCH_OBSERVED_PARAMS=off`), the same retention (`observed_keep` texts per statement,
`observed_days` days), deleted with `dbarch targets remove --purge`, never printed unless opted in.
Another role's text needs pg_read_all_stats (pg_monitor); without it PostgreSQL shows
`<insufficient privilege>`, which is counted and named. dbarch's own sessions are never sampled.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

import psycopg

from ..db import APPLICATION_NAME, DBARCH_TAG, named, tag
from .observed import ObservedSettings, literal_constants

HIDDEN = "<insufficient privilege>"
SOURCE = "activity sample"
DEFAULT_SECONDS = 20.0          # one burst (a sensor tick)
DEFAULT_INTERVAL = 0.1          # between two reads of pg_stat_activity (under a millisecond each)
DEFAULT_EVERY = 30              # the sensor's tick: a burst every this many seconds


@dataclass
class Sampled:
    """What a burst saw: per (query_id, text), the executions (pid, start) it was running in."""

    texts: dict[tuple[int, str], set] = field(default_factory=lambda: defaultdict(set))
    samples: int = 0
    hidden: int = 0             # most sessions of other roles seen at once without their text
    hidden_roles: set[str] = field(default_factory=set)
    truncated: int = 0          # texts cut at track_activity_query_size (not kept: they cannot line up)
    without_id: int = 0         # active statements without a query_id (compute_query_id off, utility statements)
    role: str | None = None
    query_size: int = 1024
    compute_query_id: str | None = None

    def notes(self) -> list[str]:
        out = []
        if self.hidden:
            out.append(f"{self.hidden} session(s) of other roles ({', '.join(sorted(self.hidden_roles)) or 'unknown'}) "
                       f"showed no text ({HIDDEN}): grant the role pg_read_all_stats so the sampler sees "
                       f"their statements (GRANT pg_monitor TO {self.role or 'the role'})")
        if self.truncated:
            out.append(f"{self.truncated} text(s) longer than track_activity_query_size ({self.query_size} bytes) were "
                       "cut by the server and not kept: raise track_activity_query_size (a restart) to keep them")
        if self.without_id and self.compute_query_id == "off":
            out.append("compute_query_id is off: no statement can be matched to pg_stat_statements (set "
                       "compute_query_id = on, or load pg_stat_statements, which turns it on)")
        return out


# statements no index serves, whose texts are not worth keeping (transaction control, settings)
UTILITY = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|START|END|ABORT|SAVEPOINT|RELEASE|SET|RESET|SHOW|DISCARD|"
                     r"DEALLOCATE|LISTEN|UNLISTEN|NOTIFY)\b", re.I)


def _text(query: str) -> str:
    return query.strip().rstrip(";").rstrip()


def read_activity(conn: psycopg.Connection, into: Sampled) -> None:
    """One read of pg_stat_activity into `into` (the target's other client sessions)."""
    rows = conn.execute(named("select_active_statements"), {"application_name": APPLICATION_NAME}).fetchall()
    into.samples += 1
    hidden = 0
    for pid, started, query_id, query, user in rows:
        if query == HIDDEN:
            hidden += 1
            if user:
                into.hidden_roles.add(user)
            continue
        if not query or started is None or DBARCH_TAG in query or UTILITY.match(query):
            continue
        if query_id is None:
            into.without_id += 1
            continue
        if len(query.encode()) >= into.query_size - 1:
            into.truncated += 1
            continue
        into.texts[(int(query_id), _text(query))].add((pid, started))
    into.hidden = max(into.hidden, hidden)


def _settings(conn: psycopg.Connection, into: Sampled) -> None:
    row = conn.execute(tag("SELECT current_user::text, current_setting('track_activity_query_size'), "
                           "current_setting('compute_query_id', true)")).fetchone()
    into.role = row[0]
    size = row[1].strip().upper()
    # the setting prints with a unit (1kB, 4kB) unless given in bytes
    factor = 1024 if size.endswith("KB") else 1024 * 1024 if size.endswith("MB") else 1
    into.query_size = int("".join(ch for ch in size if ch.isdigit()) or 1024) * factor
    into.compute_query_id = row[2]


def sample(conn: psycopg.Connection, *, seconds: float, interval: float, stop: threading.Event | None = None,
           clock: Callable[[], float] = time.monotonic) -> Sampled:
    """Read pg_stat_activity every `interval` seconds for `seconds` (at least once); `stop` ends it early."""
    out = Sampled()
    _settings(conn, out)
    deadline = clock() + max(0.0, seconds)
    while True:
        read_activity(conn, out)
        left = deadline - clock()
        if left <= 0:
            break
        if stop is not None:
            if stop.wait(min(interval, left)):
                break
        else:
            time.sleep(min(interval, left))
    return out


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def save(store_conn: psycopg.Connection, target: str, sampled: Sampled, settings: ObservedSettings,
         now: datetime | None = None) -> int:
    """Keep the distinct texts seen (a text seen again counts its new executions), then apply the
    retention: the newest `keep_per_statement` texts per statement, none older than `retention_days`."""
    now = now or datetime.now(timezone.utc)
    rows = [{"target": target, "queryid": qid, "text_hash": _hash(text), "query_text": text, "seen": now,
             "executions": len(runs)} for (qid, text), runs in sampled.texts.items()]
    with store_conn.transaction():
        with store_conn.cursor() as cur:
            if rows:
                cur.executemany(named("upsert_activity_sample"), rows)
        store_conn.execute(named("delete_activity_samples_beyond_retention"),
                           {"target": target, "keep": settings.keep_per_statement, "days": settings.retention_days})
    return len(rows)


def sample_activity(target_conn: psycopg.Connection, store_conn: psycopg.Connection, *, target: str,
                    settings: ObservedSettings, seconds: float = DEFAULT_SECONDS, interval: float = DEFAULT_INTERVAL,
                    stop: threading.Event | None = None) -> dict:
    """One burst of the sampler, kept in the store: what the sensor runs each tick, `dbarch
    sample-activity` for as long as asked, and the quality suite beside its application. Returns
    counts and notes (never a text)."""
    if not settings.enabled:
        return {"activity_samples": "off", "notes": []}
    seen = sample(target_conn, seconds=seconds, interval=interval, stop=stop)
    kept = save(store_conn, target, seen, settings)
    return {"activity_samples": "on", "samples": seen.samples, "texts": kept,
            "statements": len({qid for qid, _t in seen.texts}),
            "executions": sum(len(r) for r in seen.texts.values()), "notes": seen.notes()}


def load(store_conn: psycopg.Connection, target: str, queryids: Iterable[int],
         settings: ObservedSettings) -> dict[int, list[str]]:
    """The kept texts per query_id, newest first ({} when collection is off)."""
    if not settings.enabled:
        return {}
    out: dict[int, list[str]] = {}
    rows = store_conn.execute(named("select_activity_samples"),
                              {"target": target, "queryids": sorted(set(queryids)),
                               "days": settings.retention_days}).fetchall()
    for qid, text, _executions in rows:
        out.setdefault(qid, []).append(text)
    return out


def constants(normalized: str, texts: Sequence[str] | None) -> list:
    """Each sampled text lined up with pg_stat_statements' `$n` (params.SampledText: the values of
    its literals, and whether it also holds bound parameters); texts that do not line up (another
    statement under a colliding query_id) are left out."""
    from .params import SampledText

    out = []
    for text in texts or []:
        found = literal_constants(normalized, _text(text))
        if found:
            out.append(SampledText({n: v for n, v in found.items() if v is not None},
                                   bound=any(v is None for v in found.values())))
    return out


def forget(store_conn: psycopg.Connection, target: str | None = None) -> int:
    """Delete the kept texts (of one target, or all)."""
    from psycopg import sql

    cur = store_conn.execute(sql.SQL(tag("DELETE FROM dbarch.activity_sample WHERE {}")).format(
        sql.SQL("target = %(target)s") if target else sql.SQL("true")), {"target": target})
    return cur.rowcount


def summary_line(done: dict) -> str:
    """One line saying what a burst kept (for the CLI and the sensor's tick)."""
    if done.get("activity_samples") == "off":
        return "activity sampling is off (DBARCH_OBSERVED_PARAMS=off or observed_params: false)"
    return (f"{done['samples']} sample(s) of pg_stat_activity: {done['texts']} distinct text(s) of "
            f"{done['statements']} statement(s) seen in {done['executions']} execution(s)")


def coverage(store_conn: psycopg.Connection, target: str, queries: Sequence, settings: ObservedSettings) -> dict:
    """How many of the slow statements have a sampled text, and of those whose indexable
    expressions lost their constants (`substr(code, $2, $3)`), how many a sampled text gives back."""
    from .params import _in_expressions

    if not settings.enabled:
        return {"activity_samples": "off"}
    texts = load(store_conn, target, [q.queryid for q in queries], settings)
    hidden = recovered = 0
    for q in queries:
        inside = set(_in_expressions(q.query_text))
        if not inside:
            continue
        hidden += 1
        if any(inside <= set(found.values) for found in constants(q.query_text, texts.get(q.queryid))):
            recovered += 1
    return {"activity_samples": "on", "sampled_statements": sum(1 for q in queries if texts.get(q.queryid)),
            "slow_statements": len(queries), "lost_constants": hidden, "lost_constants_sampled": recovered}


def coverage_note(done: dict) -> str | None:
    """The snapshot's note on the sampled texts, when there is something to say."""
    if done.get("activity_samples") != "on" or not (done["sampled_statements"] or done["lost_constants"]):
        return None
    note = (f"activity samples: texts of {done['sampled_statements']} of {done['slow_statements']} slow statements "
            "(only statements running when pg_stat_activity is sampled are seen)")
    if done["lost_constants"]:
        note += (f"; {done['lost_constants']} statement(s) hold constants in an indexed expression that "
                 f"pg_stat_statements replaced, {done['lost_constants_sampled']} given back by a sampled text")
        if done["lost_constants_sampled"] < done["lost_constants"]:
            note += " (the server log, or the activity_sampler sensor / `dbarch sample-activity` at peak hours, gives the others)"
    return note


def sample_targets(names: Sequence[str], connect_target: Callable, connect_store: Callable, *,
                   settings: ObservedSettings, seconds: float = DEFAULT_SECONDS,
                   interval: float = DEFAULT_INTERVAL, stop: threading.Event | None = None) -> dict[str, dict]:
    """One tick of the activity_sampler sensor: a burst on each target, the burst's time shared
    between them (a tick stays well inside the sensor's time limit). An unreachable target is a
    named problem in its entry, never an exception."""
    from ..errors import DbarchError

    out: dict[str, dict] = {}
    share = seconds / max(1, len(names))
    for name in names:
        try:
            with connect_target(name) as conn, connect_store() as store_conn:
                out[name] = sample_activity(conn, store_conn, target=name, settings=settings, seconds=share,
                                            interval=interval, stop=stop)
        except (DbarchError, psycopg.Error) as exc:
            problem = exc.problem if isinstance(exc, DbarchError) else (str(exc).strip().splitlines() or ["?"])[0]
            out[name] = {"problem": problem, "notes": []}
    return out
