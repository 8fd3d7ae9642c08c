"""Scoring a configuration against the oracle, and the calibration table of dbarch's confidence.

Definitions (issue 10, "A quality suite nobody can tune to"):
- fixable: a statement the oracle's set makes at least FIXED_MIN times faster than with no index,
  among the statements dbarch is asked to consider (no-index time at least `min_mean_ms`);
- fixed: a fixable statement that the configuration makes at least FIXED_MIN times faster, and at
  least ORACLE_SHARE of the oracle's speedup or below `min_mean_ms` (dbarch's own threshold of a slow
  statement); the strict ratio alone is reported beside it;
- harmful: a statement at least HARM times and NOISE_MS per call slower than with no index, exposed to
  the configuration's indexes; a slowdown the replay's blocks show is confirmed or cleared by an
  interleaved A/B with and without those indexes (run_quality.referee, measure.interleaved);
- workload time vs the oracle's: sum of calls x ms per call, the configuration's over the oracle's;
- unmeasured: slow statements of the audit's JSON that got no recommendation because nothing was
  measured for them, with the reason dbarch named (a generic or empty reason counts as unnamed);
- calibration: for each recommendation, whether replaying its statement with the application's
  values is really at least FIXED_MIN times faster with its index, per confidence band.
dbarch_pipeline.bench.evaluate had no calibration_table when this was written; calibration_table
below is the suite's own.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

FIXED_MIN = 2.0
ORACLE_SHARE = 0.5
HARM = 1.1
BANDS = [(0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001)]
GENERIC_REASONS = ("not benchmarked (statement not safe to execute, or skipped)",)
UNMEASURED_PREFIXES = ("not benchmarked", "benchmark failed", "candidates could only be costed", "cannot ",
                       "skipped", "not measured", "unmeasured")


def speedup(base_ms: float, ms: float) -> float:
    return base_ms / max(ms, 1e-6)


def fixable(base: dict[str, float], oracle: dict[str, float], min_mean_ms: float = 1.0) -> list[str]:
    return [n for n in base if base[n] >= min_mean_ms and speedup(base[n], oracle[n]) >= FIXED_MIN]


def is_fixed(base_ms: float, oracle_ms: float, ms: float, slow_ms: float | None = None) -> bool:
    """At least FIXED_MIN times faster, and at least ORACLE_SHARE of the oracle's speedup. With
    `slow_ms` (the audit's slow-statement threshold), a statement brought below it also counts:
    45 ms -> 0.31 ms against the oracle's 0.13 ms is fixed for anyone, and at that size the difference
    is of the order of a shared machine's client-side timing noise (the strict ratio is reported too)."""
    s = speedup(base_ms, ms)
    if s < FIXED_MIN:
        return False
    return s >= ORACLE_SHARE * speedup(base_ms, oracle_ms) or (slow_ms is not None and ms < slow_ms)


def total(calls: dict[str, int], timings: dict[str, float]) -> float:
    return sum(calls[n] * timings[n] for n in calls)


def unmeasured(audit: dict) -> list[dict]:
    """Slow statements of the audit's JSON with no measurement, and the reason dbarch gave."""
    out = []
    for q in audit.get("queries", []):
        if q.get("recommendation") or q.get("rewrite"):
            continue
        reason = (q.get("unmeasured_reason") or q.get("reason") or q.get("why_none") or "").strip()
        if q.get("measured") is False or reason.lower().startswith(UNMEASURED_PREFIXES):
            out.append({"queryid": q.get("queryid"), "query": q.get("query", ""), "reason": reason,
                        "named": bool(reason) and reason not in GENERIC_REASONS})
    return out


_INDEX_NAME = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                         r"(\"(?:[^\"]|\"\")+\"|\S+)\s+ON\s+", re.IGNORECASE)


def index_name(ddl: str) -> str | None:
    m = _INDEX_NAME.search(ddl)
    return m.group(1).strip('"') if m else None


def shape(ddl: str) -> str:
    """A DDL without its index name or CONCURRENTLY: what the index is, for comparing two runs."""
    m = _INDEX_NAME.search(ddl)
    body = ddl[m.end():] if m else ddl
    return " ".join(body.split()).rstrip(";").lower()


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    count: int
    held: int

    @property
    def share(self) -> float | None:
        return self.held / self.count if self.count else None

    def label(self) -> str:
        return f"{self.low:.1f}-{min(self.high, 1.0):.1f}"


def calibration_table(records: list[dict], bands: list[tuple[float, float]] = BANDS) -> list[Band]:
    """records: {"confidence": float, "held": bool, ...}, one per recommendation replayed."""
    out = []
    for low, high in bands:
        inside = [r for r in records if r["confidence"] is not None and low <= r["confidence"] < high]
        out.append(Band(low, high, len(inside), sum(1 for r in inside if r["held"])))
    return out


def format_calibration(rows: list[Band]) -> str:
    lines = ["| confidence | recommendations | held (>= 2x when replayed) |", "|---|---|---|"]
    for b in rows:
        share = f"{b.share:.0%} ({b.held}/{b.count})" if b.count else "-"
        lines.append(f"| {b.label()} | {b.count} | {share} |")
    return "\n".join(lines)


def summarize(per_seed: list[dict], key: str) -> dict:
    """Mean and worst over seeds of one figure (worst: the lowest share, the highest time ratio)."""
    values = [s[key] for s in per_seed if s.get(key) is not None]
    if not values:
        return {"mean": None, "worst": None}
    worst = max(values) if key == "vs_oracle" else min(values)
    return {"mean": statistics.fmean(values), "worst": worst}
