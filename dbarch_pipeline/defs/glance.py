"""The week at a glance in Dagster: table metadata and the plotted keys.

Tables use dg.TableSchema / dg.MetadataValue.table. Plotted numbers carry their unit in the key and
the target in brackets, so each target is its own series week over week (runs of two targets never
share a line); a value that does not exist this week (no realized gain yet, no recommendation to
have a confidence) is left out rather than plotted as 0. Bookkeeping (ids, counts of cache hits)
goes into one JSON entry, never into a plot.
"""

from __future__ import annotations

from typing import Any, Iterable

import dagster as dg

# (column, type, description) per table
SLOW_STATEMENTS = [
    ("statement", "string", "the normalized statement, cut before a clause when long"),
    ("calls", "int", "calls this week"),
    ("total_ms", "float", "time the application spent in it this week, ms"),
    ("mean_ms", "float", "the application's mean time per call, ms"),
    ("rows_per_call", "float", "rows returned or affected per call"),
    ("recommendation", "string", "the index or rewrite chosen, else why none"),
]
BENCHMARKS = [
    ("index", "string", "candidate index (name on table)"),
    ("statement", "string", "the statement timed with and without it"),
    ("status", "string", "measured, screened (HypoPG: not worth building) or failed"),
    ("before_ms", "float", "measured median without the index, ms"),
    ("after_ms", "float", "measured median with the index, ms"),
    ("gain_pct", "float", "measured gain, %"),
    ("planner_gain_pct", "float", "planner cost gain, %"),
    ("regression", "bool", "the index makes this statement slower"),
    ("own_statement", "bool", "proposed for this statement (false: another statement on the same table)"),
]
INDEXES = [
    ("decision", "string", "chosen, declined, or drop (an existing index)"),
    ("index", "string", "index (name on table)"),
    ("size_mb", "float", "index size, MB"),
    ("upkeep_ms_per_s", "float", "write upkeep at this week's write rate, ms per second"),
    ("saves_ms_per_s", "float", "read time saved at this week's call rates, ms per second"),
    ("statements", "int", "statements it serves"),
    ("why", "string", "why declined, or why worth dropping"),
    ("pull_request", "string", "the pull request (or local branch) proposing it"),
]


def table(rows: Iterable[dict], columns: list[tuple[str, str, str]]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind, description=text) for name, kind, text in columns])
    records = [dg.TableRecord({name: row.get(name) for name, _k, _t in columns})
               for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


def plots(target: str, values: dict[str, float | int | None]) -> dict[str, Any]:
    """`{"<what, unit> [<target>]": number}` for the values that exist."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[f"{key} [{target}]"] = dg.MetadataValue.float(float(value)) if isinstance(value, float) else int(value)
    return out


def details(summary: dict) -> dict[str, Any]:
    """Everything else the stage reports, as one JSON entry (never plotted); its text values (never
    plotted either) also as entries of their own."""
    out: dict[str, Any] = {k: v for k, v in summary.items() if isinstance(v, str)}
    out["summary"] = dg.MetadataValue.json({k: v for k, v in summary.items() if v is not None})
    return out
