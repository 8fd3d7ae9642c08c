"""Gain, statistical verdict and confidence from measurements, never from a constant.

Timings come in pairs: each parameter set is run without and with the index in alternation
(see bench.measure.measure_pair), so drift of the machine hits both sides alike. The evidence is a
two-level bootstrap of the statement's time ratio (with / without): parameter sets are resampled,
then the runs within each set, and the ratio of the mean of the per-set medians is recomputed
each time. From it:
- the verdict: "faster" when the 95% interval of the ratio lies below 0.95, "slower" when it lies
  above 1.05, otherwise "within noise" (the audit then takes more runs, up to a limit);
- the confidence, which is what a reviewer reads: the share of the bootstrap's resamples in which
  the statement is at least 2x faster with a 10% margin (2.2x),

      confidence = P(speedup >= 2.2x)

  so it rests on the low end of the measured speedup, not on its point estimate: 0.8 means the
  lower 20% bound of the speedup clears 2.2x, 0.975 that the 95% interval's low end does.
  **What 0.8 promises:** at or above it, at least 9 in 10 recommendations are at least 2x faster
  when replayed with the application's values. A solid gain under 2x scores low: it is real and
  still recommended, but it is not what the promise is about. `calibration_table` checks the
  promise on replayed suites.
- The values must be the application's, or behave like them: the resamples are drawn from the
  parameter sets whose values were observed in the server log or calibrated to the statement's
  rows per call; sets of guessed values (nothing tied them to the application) are left out when
  at least two others exist (one set alone cannot say how the gain varies with the values); a
  measurement that only had guessed values, or a single parameter set, cannot reach the
  pull-request bar (`trusted_confidence`).
- An index the plans never use scores 0; a statement that could only be costed (nothing timed) at
  most 0.4; a result "within noise" at most 0.4; a side-effect gain on another statement than the
  one the index was proposed for at most 0.5, so it never carries a pull request by itself.

The bootstrap's random generator is seeded from nothing but the data, so the same timings always
give the same confidence.

>>> parts = confidence_parts([[10, 11, 10, 10.5]], [[1, 1.2, 1.1, 1.0]], 0.8, used=True)
>>> parts["verdict"], confidence_from([[10, 11, 10, 10.5]], [[1, 1.2, 1.1, 1.0]], 0.8, used=True)
('faster', 1.0)
>>> confidence_from([[10, 11, 10, 9.7]], [[10, 10.5, 9.9, 10.2]], 0.1, used=True) < 0.3
True
>>> confidence_from([[10, 11, 10, 10.5]], [[6, 6.2, 6.1, 6.0]], 0.4, used=True)   # 1.7x: real, not 2x
0.0
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from typing import Iterable, Sequence

WEIGHTS = {"faster": 0.0, "twice_as_fast": 1.0}   # the confidence is P(2.2x); "faster" is shown, not weighed
PART_MEANING = {
    "faster": "bootstrap probability that the statement is at least 5% faster (shown, not weighed: a real "
              "gain under 2x is not what the confidence promises)",
    "twice_as_fast": "bootstrap probability that it is at least 2x faster, with a 10% margin (2.2x), "
                     "parameter sets and runs resampled",
}
TRUSTED_SOURCES = ("observed", "calibrated")
GUESSED_CAP = 0.5            # guessed values only: below the pull-request bar
MEANINGFUL_SPEEDUP = 0.05
TARGET_SPEEDUP = 2.0
REPLAY_MARGIN = 1.10         # 2x promised, 2.2x demanded of the resamples
PLANNER_ONLY_CAP = 0.4
WITHIN_NOISE_CAP = 0.4
SIDE_EFFECT_CAP = 0.5        # below the pull-request bar: a side effect never carries one alone
BOOTSTRAP = 400
FULL_MAGNITUDE = 0.5


def gain_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return round(100.0 * (before - after) / before, 2)


def _seed(*runs: Sequence[Sequence[float]]) -> int:
    text = repr([[round(t, 6) for t in r] for side in runs for r in side])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def bootstrap_ratios(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]],
                     n: int = BOOTSTRAP) -> list[float]:
    """Resampled ratios (time with / time without) of the statement: sets, then runs within sets."""
    sets = [(list(b), list(a)) for b, a in zip(before_runs, after_runs) if b and a]
    if not sets:
        return []
    rng = random.Random(_seed(before_runs, after_runs))
    out = []
    for _ in range(n):
        picked = [sets[rng.randrange(len(sets))] for _ in sets]
        before = statistics.fmean(statistics.median(rng.choices(b, k=len(b))) for b, _ in picked)
        after = statistics.fmean(statistics.median(rng.choices(a, k=len(a))) for _, a in picked)
        out.append(after / before if before > 0 else 1.0)
    return sorted(out)


def verdict(ratios: Sequence[float]) -> tuple[str, tuple[float, float] | None]:
    """'faster', 'slower' or 'within noise', with the 95% interval of the ratio."""
    if not ratios:
        return "within noise", None
    lo = ratios[int(0.025 * (len(ratios) - 1))]
    hi = ratios[int(math.ceil(0.975 * (len(ratios) - 1)))]
    if hi < 1 - MEANINGFUL_SPEEDUP:
        return "faster", (lo, hi)
    if lo > 1 + MEANINGFUL_SPEEDUP:
        return "slower", (lo, hi)
    return "within noise", (lo, hi)


def paired_interval(new: dict, current: dict, n: int = BOOTSTRAP) -> tuple[float, float] | None:
    """The 95% interval of the time ratio between two measurements of one statement (`new`'s time
    over `current`'s: two indexes, or an index and a configuration) taken with the same parameter
    sets, when `new` is nowhere slower: on no set is the low end of its own ratio (runs resampled)
    more than 10% above `current`'s.

    Values decide a statement's time far more than the clock does (a heavy key against a light
    one), so two intervals resampled over parameter sets can overlap although every set says one
    side is at least as fast: the resampling then asks "what if the application only sent the heavy
    keys", where the two are equal. When one side dominates set by set, no mix of the sets makes it
    slower, and what is left to doubt is the clock: the runs are resampled within each set, the sets
    kept. Each set's runs are scaled by the two experiments' own baselines of that set, so drift
    between the experiments cancels. None when the sets differ, the evidence lacks per-set timings,
    or `new` is slower on some set (the unpaired intervals then decide).

    >>> ev = lambda after: {"parameter_sets": [["1"], ["2"]], "before": {"timings_ms": [[30, 31], [30, 29]]},
    ...                     "after": {"timings_ms": after}}
    >>> pair = {"evidence": ev([[20, 21], [0.3, 0.31]])}
    >>> one = {"evidence": ev([[20, 21], [19, 20]])}
    >>> lo, hi = paired_interval(pair, one); hi < 0.95
    True
    >>> paired_interval(one, pair) is None
    True
    """
    a, b = new.get("evidence") or {}, current.get("evidence") or {}
    if not a.get("parameter_sets") or a.get("parameter_sets") != b.get("parameter_sets"):
        return None
    befores = [(ev.get("before") or {}).get("timings_ms") or [] for ev in (a, b)]
    afters = [(ev.get("after") or {}).get("timings_ms") or [] for ev in (a, b)]
    count = len(a["parameter_sets"])
    if any(len(t) != count for t in befores + afters):
        return None
    idx = a.get("trusted_sets") if a.get("trusted_sets") == b.get("trusted_sets") else None
    sets: list[tuple[list[float], list[float]]] = []
    for i in idx if idx else range(count):
        if not all(t[i] for t in befores + afters):
            return None
        base_new, base_cur = statistics.median(befores[0][i]), statistics.median(befores[1][i])
        if base_new <= 0 or base_cur <= 0:
            return None
        common = (base_new + base_cur) / 2
        new_runs = [t * common / base_new for t in afters[0][i]]
        cur_runs = [t * common / base_cur for t in afters[1][i]]
        sets.append((new_runs, cur_runs))
    if not sets:
        return None
    rng = random.Random(_seed([s for s, _ in sets], [c for _, c in sets]))
    for new_runs, cur_runs in sets:
        # slower on this set beyond the clock's noise: even the low end of its own ratio is 10% above
        own = sorted(statistics.median(rng.choices(new_runs, k=len(new_runs)))
                     / max(1e-9, statistics.median(rng.choices(cur_runs, k=len(cur_runs)))) for _ in range(200))
        if own[int(0.025 * (len(own) - 1))] > 1 + EQUIVALENT:
            return None
    ratios = []
    for _ in range(n):
        new_t = sum(statistics.median(rng.choices(s, k=len(s))) for s, _ in sets)
        cur_t = sum(statistics.median(rng.choices(c, k=len(c))) for _, c in sets)
        ratios.append(new_t / cur_t if cur_t > 0 else 1.0)
    ratios.sort()
    return ratios[int(0.025 * (len(ratios) - 1))], ratios[int(math.ceil(0.975 * (len(ratios) - 1)))]


EQUIVALENT = 0.10   # an interval inside 1 ± 10%: whatever the difference, it is below the bar


def separated(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]]) -> bool:
    """Whether more runs are pointless: the two sides are told apart (faster or slower), or the
    interval shows any difference is too small to matter."""
    what, ci = verdict(bootstrap_ratios(before_runs, after_runs, n=200))
    return what != "within noise" or ci is None or (ci[0] >= 1 - EQUIVALENT and ci[1] <= 1 + EQUIVALENT)


def confidence_parts(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]],
                     planner_gain: float | None, *, used: bool) -> dict:
    ratios = bootstrap_ratios(before_runs, after_runs)
    if not ratios:
        return {"faster": 0.0, "twice_as_fast": 0.0, "verdict": "within noise", "ratio_ci": None,
                "planner_agrees": None}
    what, ci = verdict(ratios)
    point = statistics.median(ratios)
    return {
        "faster": round(sum(1 for r in ratios if r <= 1 - MEANINGFUL_SPEEDUP) / len(ratios), 4),
        "twice_as_fast": round(sum(1 for r in ratios if r <= 1 / (TARGET_SPEEDUP * REPLAY_MARGIN)) / len(ratios), 4),
        "verdict": what,
        "speedup": round(1 / point, 3) if point > 0 else None,
        "ratio_ci": [round(ci[0], 4), round(ci[1], 4)] if ci else None,
        "runs_per_set": min((len(r) for r in after_runs), default=0),
        "planner_agrees": None if planner_gain is None else (planner_gain > 0) == (point < 1),
        "index_used": used,
    }


def confidence_of(parts: dict, *, used: bool, cross: bool = False) -> float:
    if not used or parts.get("verdict") == "slower":
        return 0.0
    value = sum(WEIGHTS[k] * parts.get(k, 0.0) for k in WEIGHTS)
    if parts.get("verdict") != "faster":
        value = min(value, WITHIN_NOISE_CAP)
    if cross:
        value = min(value, SIDE_EFFECT_CAP)
    return round(value, 3)


def trusted_sets(evidence: dict) -> list[int] | None:
    """The parameter sets whose values were observed or calibrated, when only some were (None when
    all were, none were, or the evidence does not say per set)."""
    sources = (evidence.get("parameter_values") or {}).get("sources") or []
    before = (evidence.get("before") or {}).get("timings_ms") or []
    after = (evidence.get("after") or {}).get("timings_ms") or []
    if not sources or len(sources) != len(before) or len(before) != len(after):
        return None
    trusted = [i for i, kinds in enumerate(sources) if kinds and all(k in TRUSTED_SOURCES for k in kinds)]
    return trusted if 0 < len(trusted) < len(sources) else None


def trusted_view(row: dict) -> dict:
    """A benchmark row as the trusted parameter sets measured it: when some sets had guessed values
    and others observed or calibrated ones, the time, gain, interval and verdict come from the
    latter (a guessed `payload ? 'v'` that matches every row says nothing about the keys the
    application asks for). The evidence keeps every timing and names the sets used.

    >>> ev = {"parameter_values": {"sources": [["observed"], ["guessed"]]}, "index_used": True,
    ...       "before": {"timings_ms": [[10, 10.2, 9.9], [10, 10.1, 9.8]]},
    ...       "after": {"timings_ms": [[1, 1.1, 1.0], [9, 9.2, 9.1]]}, "confidence_parts": {}}
    >>> v = trusted_view({"ms_before": 10.0, "ms_after": 5.1, "measured_gain_pct": 49.0, "confidence": 0.0,
    ...                   "evidence": ev})
    >>> v["ms_before"], v["ms_after"], v["measured_gain_pct"], v["evidence"]["trusted_sets"]
    (10.0, 1.0, 90.0, [0])
    """
    ev = row.get("evidence") or {}
    idx = trusted_sets(ev) if row.get("ms_before") is not None else None
    if idx is None:
        return row
    before = [ev["before"]["timings_ms"][i] for i in idx]
    after = [ev["after"]["timings_ms"][i] for i in idx]
    ms_before = statistics.fmean(statistics.median(t) for t in before)
    ms_after = statistics.fmean(statistics.median(t) for t in after)
    used = bool(ev.get("index_used"))
    parts = confidence_parts(before, after, None, used=used)
    parts["planner_agrees"] = (ev.get("confidence_parts") or {}).get("planner_agrees")
    return {**row, "ms_before": ms_before, "ms_after": ms_after, "measured_gain_pct": gain_pct(ms_before, ms_after),
            "confidence": confidence_of(parts, used=used, cross=bool(ev.get("cross_statement"))),
            "evidence": {**ev, "confidence_parts": parts, "verdict": parts["verdict"], "trusted_sets": idx}}


def _set_key(values) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def pooled_baselines(rows: Sequence[dict]) -> list[dict]:
    """Benchmark rows in which a measurement timed once per parameter set (a side effect's first look,
    kept because the two sides were apart beyond doubt) takes its baseline from the statement's other
    measurements of the same sets.

    Every experiment times the same statement without an index on the same values, so its baselines
    estimate one quantity. Interleaving protects a ratio from drift, but a single run has no spread
    to resample: one slow "without" run (36 ms where every other experiment measured 25 ms) turns a
    70% gain into 79% with an interval 0.002 wide, and selection then takes it for a better index
    than one measured 70% with five runs per set, or not, as the noise falls. Pooling the runs of
    the measurements with several runs per set gives the magnitude and an interval that carries the
    baseline's spread. The verdict and a regression flag stay as measured; the evidence says
    `pooled_baseline`.

    >>> ev = lambda before, after, sets: {"parameter_sets": sets, "before": {"timings_ms": before},
    ...                                   "after": {"timings_ms": after}, "confidence_parts": {}}
    >>> owner = {"queryid": 1, "status": "measured", "ms_before": 25.0,
    ...          "evidence": ev([[25, 24, 26], [25, 26, 24]], [[7, 7.2, 7.1], [7.1, 7, 7.3]], [["a"], ["b"]])}
    >>> look = {"queryid": 1, "status": "measured", "ms_before": 37.0,
    ...         "evidence": ev([[36.0], [38.0]], [[7.0], [7.2]], [["a"], ["b"]])}
    >>> pooled = pooled_baselines([owner, look])[1]
    >>> round(pooled["ms_before"], 1), round(pooled["measured_gain_pct"]), pooled["evidence"]["pooled_baseline"]
    (25.0, 72, True)
    """
    pool: dict[int, dict[str, list[float]]] = {}
    for r in rows:
        ev = r.get("evidence") or {}
        before = (ev.get("before") or {}).get("timings_ms") or []
        if r.get("status") != "measured" or not before or all(len(t) <= 1 for t in before):
            continue
        for values, runs in zip(ev.get("parameter_sets") or [], before):
            pool.setdefault(r["queryid"], {}).setdefault(_set_key(values), []).extend(runs)
    out = []
    for r in rows:
        ev = r.get("evidence") or {}
        before = (ev.get("before") or {}).get("timings_ms") or []
        after = (ev.get("after") or {}).get("timings_ms") or []
        sets = ev.get("parameter_sets") or []
        mine = pool.get(r.get("queryid"), {})
        keys = [_set_key(v) for v in sets[:len(before)]]
        if (r.get("status") != "measured" or ev.get("regression") or not before or len(after) != len(before)
                or len(keys) != len(before) or any(len(t) != 1 for t in before)
                or not all(mine.get(k) for k in keys)):
            out.append(r)
            continue
        pooled = [mine[k] for k in keys]
        ms_before = statistics.fmean(statistics.median(t) for t in pooled)
        ms_after = statistics.fmean(statistics.median(t) for t in after)
        _, ci = verdict(bootstrap_ratios(pooled, after))
        parts = {**(ev.get("confidence_parts") or {}), "ratio_ci": list(ci) if ci else None}
        out.append({**r, "ms_before": ms_before, "ms_after": ms_after, "measured_gain_pct": gain_pct(ms_before, ms_after),
                    "evidence": {**ev, "before": {**(ev.get("before") or {}), "timings_ms": pooled},
                                 "confidence_parts": parts, "pooled_baseline": True}})
    return out


def trusted_confidence(evidence: dict, confidence: float, *, cross: bool = False) -> tuple[float, str | None]:
    """The confidence from the parameter sets whose values can stand for the application's.

    evidence: a benchmark row's evidence (parameter_values.sources, one list per set; before/after
    timings per set). When some sets were guessed and others observed or calibrated, the bootstrap
    is redone on the trusted sets alone; when every set was guessed, the confidence is capped below
    the pull-request bar. Returns (confidence, why it changed or None).

    >>> ev = {"parameter_values": {"sources": [["observed"], ["guessed"]]}, "index_used": True,
    ...       "before": {"timings_ms": [[10, 10.2, 9.9], [10, 10.1, 9.8]]},
    ...       "after": {"timings_ms": [[1, 1.1, 1.0], [9, 9.2, 9.1]]}}
    >>> trusted_confidence(ev, 0.3)[0] < 0.8    # one trusted set: the guessed one shows how gains vary
    True
    >>> ev["parameter_values"]["sources"] = [["observed"], ["calibrated"], ["guessed"]]
    >>> ev["before"]["timings_ms"].insert(0, [10, 10.3, 9.7]); ev["after"]["timings_ms"].insert(0, [1.2, 1, 1.1])
    >>> trusted_confidence(ev, 0.3)
    (1.0, 'from the 2 of 3 parameter sets whose values were observed or calibrated')
    >>> ev["parameter_values"]["sources"] = [["guessed"], ["guessed"]]
    >>> trusted_confidence(ev, 0.9)
    (0.5, 'every parameter value was guessed: nothing ties it to what the application sends')
    """
    sources = (evidence.get("parameter_values") or {}).get("sources") or []
    if sources and not any(kinds and all(k in TRUSTED_SOURCES for k in kinds) for kinds in sources):
        if confidence > GUESSED_CAP:
            return GUESSED_CAP, "every parameter value was guessed: nothing ties it to what the application sends"
        return confidence, None
    trusted = trusted_sets(evidence)
    value, why = confidence, None
    if trusted is not None:
        before, after = evidence["before"]["timings_ms"], evidence["after"]["timings_ms"]
        used = bool(evidence.get("index_used"))
        if len(trusted) >= 2:
            value = confidence_from([before[i] for i in trusted], [after[i] for i in trusted], None, used=used,
                                    cross=cross)
            why = f"from the {len(trusted)} of {len(sources)} parameter sets whose values were observed or calibrated"
        else:
            # resampling one set says nothing about how the gain varies with the values: the guessed
            # sets, plausible values too, stay in for that
            value = confidence_from(before, after, None, used=used, cross=cross)
    if len(sources) == 1 and value > GUESSED_CAP:
        value, why = GUESSED_CAP, ("one parameter set was timed: how the gain varies with the application's "
                                   "values is unknown")
    return value, why


def confidence_from(before_runs: Sequence[Sequence[float]], after_runs: Sequence[Sequence[float]],
                    planner_gain: float | None, *, used: bool, cross: bool = False) -> float:
    """planner_gain is a fraction (0.8 = the planner expects 80% less cost)."""
    if not used:
        return 0.0
    return confidence_of(confidence_parts(before_runs, after_runs, planner_gain, used=used), used=used, cross=cross)


def planner_only_confidence(planner_gain: float | None, *, used: bool) -> float:
    if not used or planner_gain is None or planner_gain <= 0:
        return 0.0
    return round(PLANNER_ONLY_CAP * min(1.0, planner_gain / FULL_MAGNITUDE), 3)


CALIBRATION_BANDS = ((0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 1.0001))


def calibration_table(records: Iterable[dict], bands: Sequence[tuple[float, float]] = CALIBRATION_BANDS
                      ) -> list[dict]:
    """How often recommendations of each confidence band really held when replayed.

    records: one dict per recommendation, with `confidence` (as the audit reported it) and either
    `held` (bool: the replayed speedup was at least 2x) or `replayed_speedup` (time without / time
    with, measured independently of the audit: other runs, ideally the application's own values).
    Returns one row per band: {"band": "0.80-0.90", "count", "held", "share"} (share None when empty),
    then a row "≥0.80" that states the promise (share should be at least 0.9).

    >>> rows = calibration_table([{"confidence": 0.95, "held": True}, {"confidence": 0.85, "replayed_speedup": 1.5},
    ...                           {"confidence": 0.3, "held": False}])
    >>> [(r["band"], r["count"], r["share"]) for r in rows]
    [('0.00-0.20', 0, None), ('0.20-0.50', 1, 0.0), ('0.50-0.80', 0, None), ('0.80-0.90', 1, 0.0), ('0.90-1.00', 1, 1.0), ('>=0.80', 2, 0.5)]
    """
    items = []
    for r in records:
        held = r.get("held")
        if held is None:
            speedup = r.get("replayed_speedup")
            held = speedup is not None and speedup >= TARGET_SPEEDUP
        items.append((float(r.get("confidence") or 0.0), bool(held)))
    out = []
    for lo, hi in bands:
        inside = [h for c, h in items if lo <= c < hi]
        out.append({"band": f"{lo:.2f}-{min(hi, 1.0):.2f}", "count": len(inside), "held": sum(inside),
                    "share": round(sum(inside) / len(inside), 3) if inside else None})
    top = [h for c, h in items if c >= 0.8]
    out.append({"band": ">=0.80", "count": len(top), "held": sum(top),
                "share": round(sum(top) / len(top), 3) if top else None})
    return out


def format_calibration_table(rows: Sequence[dict]) -> str:
    """The table as markdown (for `make quality` and the README)."""
    lines = ["| confidence | recommendations | held (≥2x on replay) | share |", "|---|---:|---:|---:|"]
    for r in rows:
        share = "–" if r["share"] is None else f"{r['share']:.0%}"
        lines.append(f"| {r['band']} | {r['count']} | {r['held']} | {share} |")
    return "\n".join(lines)
