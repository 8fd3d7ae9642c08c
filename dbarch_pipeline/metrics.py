"""Prometheus metrics of the store, through prometheus_client: a custom collector reads the store at
every scrape, so the numbers are the store's and never a copy that drifts.

    db_architect_slow_queries_total{database,week}                    counter
    db_architect_recommendations_total{database,week}                 counter
    db_architect_confidence_score{database,week,recommendation,kind}  gauge, one per recommendation
    db_architect_low_confidence_recommendations{database,week}        gauge
    db_architect_performance_gain_percent{database,week,recommendation,kind}  gauge
    db_architect_realized_gain_percent{database,week,recommendation,kind}     gauge, when measured

`week` is the Sunday (UTC, YYYY-MM-DD) starting the audited week; `recommendation` the
OptimizationLog id (GET /admin/database/optimizations/{id} shows it). Only current recommendations
(status <> 'superseded') have series.

What a counter means here. The seeds name two series `..._total`, which Prometheus reserves for
counters, so they are counters. Each series is one (database, week): the slow statements that
week's audit found, and the recommendations it made that are still current. A closed week's series
stays put; it moves only when that week is audited again (the partition is replaced) or when a
later week supersedes one of its recommendations, and Prometheus reads a fall as a counter reset.
So the dashboard reads these values as they are, per week (`sum by (week)`), never through rate()
or increase(), which would turn a re-audit into a spike.

A gain that was not measured has no sample rather than a 0, which would read as "no gain": the
realized gain appears once the watch sensor has measured it on the target. Three ways out:
`dbarch serve` (GET /metrics), `dbarch metrics --serve PORT`, and a textfile for node_exporter's
textfile collector (prometheus_client's write_to_textfile: a temporary file renamed over the old one).
"""

from __future__ import annotations

import os
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

import psycopg
from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from .db import named

TEXTFILE_ENV = "DBARCH_METRICS_TEXTFILE"
LOW_CONFIDENCE = 0.6   # the seeds' alert threshold: below it a recommendation needs a person's look

WEEK_LABELS = ("database", "week")
REC_LABELS = ("database", "week", "recommendation", "kind")

# name (as exposed), type, help: the contract the dashboard and the alert rule read
METRICS = (
    ("db_architect_slow_queries_total", "counter",
     "Slow statements found by the audit of the week (latest audit of that week)."),
    ("db_architect_recommendations_total", "counter",
     "Current recommendations (not superseded) made by the audit of the week."),
    ("db_architect_confidence_score", "gauge", "Confidence of one current recommendation (0-1)."),
    ("db_architect_low_confidence_recommendations", "gauge",
     f"Current recommendations of the week with confidence below {LOW_CONFIDENCE}."),
    ("db_architect_performance_gain_percent", "gauge",
     "Gain of one current recommendation measured on the sandbox (the prediction for production), percent."),
    ("db_architect_realized_gain_percent", "gauge",
     "Gain of one applied recommendation measured on the target after it was applied, percent."),
)

ConnectFn = Callable[[], AbstractContextManager[psycopg.Connection]]


def read_store(conn: psycopg.Connection) -> tuple[list[dict], list[dict]]:
    """(audited weeks with their slow-statement counts, current recommendations with their week)."""
    with conn.cursor(row_factory=dict_row) as cur:
        weeks = cur.execute(named("metrics_select_weeks")).fetchall()
        recs = cur.execute(named("metrics_select_recommendations")).fetchall()
    return weeks, recs


def families(weeks: list[dict], recs: list[dict]) -> list[Metric]:
    """The metric families for the store's rows (pure: no database here)."""
    help_of = {name: text for name, _kind, text in METRICS}
    slow = CounterMetricFamily("db_architect_slow_queries", help_of["db_architect_slow_queries_total"],
                               labels=WEEK_LABELS)
    made = CounterMetricFamily("db_architect_recommendations", help_of["db_architect_recommendations_total"],
                               labels=WEEK_LABELS)
    low = GaugeMetricFamily("db_architect_low_confidence_recommendations",
                            help_of["db_architect_low_confidence_recommendations"], labels=WEEK_LABELS)
    confidence = GaugeMetricFamily("db_architect_confidence_score", help_of["db_architect_confidence_score"],
                                   labels=REC_LABELS)
    gain = GaugeMetricFamily("db_architect_performance_gain_percent",
                             help_of["db_architect_performance_gain_percent"], labels=REC_LABELS)
    realized = GaugeMetricFamily("db_architect_realized_gain_percent",
                                 help_of["db_architect_realized_gain_percent"], labels=REC_LABELS)

    per_week: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for w in weeks:
        per_week[(str(w["target"]), str(w["week"]))]   # an audited week with nothing recommended: 0
        slow.add_metric([str(w["target"]), str(w["week"])], float(w["slow_queries"]))
    for r in recs:
        key = (str(r["target"]), str(r["week"]))
        per_week[key].append(r)
        labels = [*key, str(r["id"]), str(r["kind"])]
        if r["confidence"] is not None:
            confidence.add_metric(labels, float(r["confidence"]))
        if r["performance_gain"] is not None:
            gain.add_metric(labels, float(r["performance_gain"]))
        if r["realized_gain"] is not None:
            realized.add_metric(labels, float(r["realized_gain"]))
    for key, rows in sorted(per_week.items()):
        made.add_metric(list(key), float(len(rows)))
        low.add_metric(list(key), float(sum(1 for r in rows
                                            if r["confidence"] is not None and r["confidence"] < LOW_CONFIDENCE)))
    return [slow, made, confidence, low, gain, realized]


class StoreCollector(Collector):
    """Reads the store at each collect(); `connect()` returns a context manager giving a connection."""

    def __init__(self, connect: ConnectFn):
        self._connect = connect

    def collect(self) -> Iterator[Metric]:
        with self._connect() as conn:
            weeks, recs = read_store(conn)
        yield from families(weeks, recs)


def registry_for(connect: ConnectFn) -> CollectorRegistry:
    """A registry holding only the store's collector (no process or platform metrics: several
    dbarch processes may be scraped, and the store's numbers must not depend on which)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(connect))
    return registry


def connection_registry(conn: psycopg.Connection) -> CollectorRegistry:
    return registry_for(lambda: nullcontext(conn))


def render_store(conn: psycopg.Connection) -> str:
    """The exposition text (Prometheus text format) of the store, read through this connection."""
    return generate_latest(connection_registry(conn)).decode()


def write_textfile(path: str | os.PathLike, registry: CollectorRegistry) -> Path:
    """For node_exporter's textfile collector: prometheus_client writes a temporary file beside the
    target and renames it, so the collector never reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def write_textfile_if_configured(store_conn: psycopg.Connection) -> Path | None:
    """Write the metrics to $DBARCH_METRICS_TEXTFILE when it is set (read now, not at import)."""
    target = os.environ.get(TEXTFILE_ENV, "").strip()
    if not target:
        return None
    return write_textfile(target, connection_registry(store_conn))
