"""Prometheus metrics of the store, in the text exposition format, one series per audited target:

    db_architect_slow_queries_total{database="app"}         slow statements of the latest audited week
    db_architect_recommendations_total{database="app"}      rows in the OptimizationLog
    db_architect_confidence_score{database="app"}           mean confidence of that week's recommendations
    db_architect_performance_gain_percent{database="app"}   mean measured gain of that week's recommendations
    db_architect_realized_gain_percent{database="app"}      mean realized gain of the applied indexes

A mean with nothing to average is left out rather than written as 0, which would read as "no gain".
Two ways out: a textfile for node_exporter's textfile collector (written to a temporary file and
renamed, so the collector never reads half a file), or a small HTTP server (127.0.0.1 by default).
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import psycopg
from psycopg.rows import dict_row

from .db import named

TEXTFILE_ENV = "DBARCH_METRICS_TEXTFILE"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    column: str


METRICS = (
    Metric("db_architect_slow_queries_total", "Slow statements in the latest audited week.", "slow_queries"),
    Metric("db_architect_recommendations_total", "Recommendations in the OptimizationLog.", "recommendations"),
    Metric("db_architect_confidence_score", "Mean confidence of the latest audited week's recommendations (0-1).",
           "confidence"),
    Metric("db_architect_performance_gain_percent",
           "Mean measured gain of the latest audited week's recommendations, percent.", "performance_gain"),
    Metric("db_architect_realized_gain_percent",
           "Mean realized gain of applied recommendations, from captures before and after, percent.",
           "realized_gain"),
)


def summary(store_conn: psycopg.Connection) -> list[dict]:
    """One row per target with the values of every metric (None where nothing to average)."""
    with store_conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(named("metrics_select_summary")).fetchall()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(rows: list[dict]) -> str:
    """The exposition text for the summary rows.

    >>> print(render([{"target": "app", "slow_queries": 3, "recommendations": 2, "confidence": 0.8,
    ...                "performance_gain": 91.5, "realized_gain": None}]).splitlines()[2])
    db_architect_slow_queries_total{database="app"} 3
    """
    lines: list[str] = []
    for metric in METRICS:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} gauge")
        for row in rows:
            value = row.get(metric.column)
            if value is not None:
                lines.append(f'{metric.name}{{database="{_label(str(row["target"]))}"}} {_number(value)}')
    return "\n".join(lines) + "\n"


def render_store(store_conn: psycopg.Connection) -> str:
    return render(summary(store_conn))


def write_textfile(path: str | os.PathLike, text: str) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)   # node_exporter often runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_textfile_if_configured(store_conn: psycopg.Connection) -> Path | None:
    """Write the metrics to $DBARCH_METRICS_TEXTFILE when it is set (read now, not at import)."""
    target = os.environ.get(TEXTFILE_ENV, "").strip()
    if not target:
        return None
    return write_textfile(target, render_store(store_conn))


def serve(render_fn: Callable[[], str], *, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve `render_fn()` on GET /metrics (and /) from a daemon thread; port 0 picks a free one
    (`server.server_address`). Stop with `server.shutdown()`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            try:
                body = render_fn().encode()
            except Exception as exc:  # a store hiccup answers 500; the server keeps running
                self.send_error(500, explain=str(exc))
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # scrapes every few seconds: stay quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="dbarch-metrics", daemon=True).start()
    return server
