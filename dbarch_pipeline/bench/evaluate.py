"""Gain and confidence from measurements, never from a constant.

Confidence is the weighted evidence that the index really makes the statement faster:
- consistency: the share of parameter sets whose median got at least 5% faster;
- separation: the share of parameter sets where every run with the index beat every run without;
- agreement: the planner's cost moved the same way as the clock (and the plan uses the index);
- magnitude: the measured gain, saturating at 50%.
An index the plans never use gets 0; a statement that could only be costed (no values to bind)
gets at most 0.4, because nothing was timed.

>>> round(confidence_from([[10, 11, 10]], [[1, 1.2, 1.1]], 0.8, used=True), 2)
1.0
>>> confidence_from([[10, 11, 10]], [[10, 10.5, 9.9]], 0.1, used=True) < 0.3
True
"""

from __future__ import annotations

import statistics
from typing import Sequence

WEIGHTS = {"consistency": 0.35, "separation": 0.25, "agreement": 0.2, "magnitude": 0.2}
MEANINGFUL_SPEEDUP = 0.05
FULL_MAGNITUDE = 0.5
PLANNER_ONLY_CAP = 0.4


def gain_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return round(100.0 * (before - after) / before, 2)


def confidence_parts(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]],
                     planner_gain: float | None, *, used: bool) -> dict[str, float]:
    sets = list(zip(before_runs, after_runs))
    if not sets:
        return {"consistency": 0.0, "separation": 0.0, "agreement": 0.0, "magnitude": 0.0}
    faster = sum(1 for b, a in sets if statistics.median(a) < statistics.median(b) * (1 - MEANINGFUL_SPEEDUP))
    separated = sum(1 for b, a in sets if max(a) < min(b))
    before = statistics.fmean(statistics.median(b) for b, _ in sets)
    after = statistics.fmean(statistics.median(a) for _, a in sets)
    measured = (before - after) / before if before > 0 else 0.0
    if planner_gain is None:
        agreement = 0.5
    elif measured > 0 and planner_gain > 0 or measured <= 0 and planner_gain <= 0:
        agreement = 1.0 if used else 0.0
    else:
        agreement = 0.0
    return {
        "consistency": faster / len(sets),
        "separation": separated / len(sets),
        "agreement": agreement,
        "magnitude": max(0.0, min(1.0, measured / FULL_MAGNITUDE)),
    }


def confidence_from(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]],
                    planner_gain: float | None, *, used: bool) -> float:
    """planner_gain is a fraction (0.8 = the planner expects 80% less cost)."""
    if not used:
        return 0.0
    parts = confidence_parts(before_runs, after_runs, planner_gain, used=used)
    if parts["magnitude"] <= 0:
        # slower or equal: whatever the consistency, this is not evidence for the index
        return round(min(0.1, 0.1 * parts["agreement"]), 3)
    return round(sum(WEIGHTS[k] * v for k, v in parts.items()), 3)


def planner_only_confidence(planner_gain: float | None, *, used: bool) -> float:
    if not used or planner_gain is None or planner_gain <= 0:
        return 0.0
    return round(PLANNER_ONLY_CAP * min(1.0, planner_gain / FULL_MAGNITUDE), 3)
