"""The same verdict while the evidence is the same: the previous audit's measurements stand as long as
new ones agree with them within the clock's noise.

Every choice the selection makes from the clock has an edge where noise decides: the 10% bar
(`--min-gain-pct`), the tie rule between two indexes for the same statements (within 10%, or
overlapping intervals), "told apart" by the bootstrap interval. Audit unchanged data twice and a
measurement near an edge lands on either side, so the chosen set flips although nothing changed.
A wider margin only moves the edge. What does not move with the clock is the previous measurement:
when the new one of the same index on the same statement (same fingerprint, same definition) is not
told apart from it (`told_apart`: more than 10% apart *and* disjoint 95% intervals, the rule the
selection's ties use), the evidence has not changed, and the selection is given the measurement it
decided on last time (`anchor`; the row's evidence says `anchored`, with both). The same evidence,
the same rates and upkeep give the same set, decided the same way. A measurement that moved beyond
noise replaces the old one (`moved`), and so does everything measured for the first time. The
reference is the measurement last decided on, not the last taken: a slow drift accumulates until it
is told apart, then counts.

The previous audit's measurements are kept as its selection saw them (trusted parameter sets, pooled
baselines and its own anchoring applied: `summarize`), with the snapshot of the audit that follows
(audit.take_snapshot), read before a new snapshot of the same week replaces the old one.

>>> then = [{"fingerprint": "f", "ddl": "A", "ms_before": 10.0, "ms_after": 4.4, "measured_gain_pct": 56.0,
...          "confidence": 0.5, "index_used": True,
...          "evidence": {"confidence_parts": {"ratio_ci": [0.40, 0.48]}, "verdict": "faster"}}]
>>> now = {"queryid": 1, "ddl": "A", "status": "measured", "ms_before": 10.2, "ms_after": 5.0,
...        "measured_gain_pct": 51.0, "confidence": 0.4,
...        "evidence": {"index_used": True, "confidence_parts": {"ratio_ci": [0.46, 0.52]}, "verdict": "faster"}}
>>> row = anchor([now], {1: "f"}, then)[0]
>>> row["measured_gain_pct"], row["evidence"]["anchored"]["now"]["gain"]
(56.0, 51.0)
>>> far = {**now, "measured_gain_pct": 20.0, "evidence": {**now["evidence"], "confidence_parts": {"ratio_ci": [0.75, 0.85]}}}
>>> row = anchor([far], {1: "f"}, then)[0]
>>> row["measured_gain_pct"], row["evidence"]["moved"]["previous"]["gain"]
(20.0, 56.0)
"""

from __future__ import annotations

NET_NOISE = 0.10   # savings this close (relative) are not told apart: the selection's tie rule

# what the clock decided in a benchmark row: taken together from one measurement, never mixed
# (the planner's estimate with it: a verdict the clock still vouches for does not move with the estimate)
MEASUREMENT_KEYS = ("ms_before", "ms_after", "measured_gain_pct", "confidence", "estimated_gain_pct",
                    "cost_before", "cost_after")
EVIDENCE_KEYS = ("parameter_sets", "parameter_values", "confidence_parts", "verdict", "regression",
                 "trusted_sets", "pooled_baseline", "runs_per_set")
TIMING_KEYS = ("timings_ms", "median_ms")   # of the evidence's before / after (their plans stay the row's own)


def ratio_ci(row: dict) -> list[float] | None:
    return ((row.get("evidence") or {}).get("confidence_parts") or {}).get("ratio_ci")


def told_apart(gain_a: float | None, ci_a: list[float] | None, gain_b: float | None,
               ci_b: list[float] | None) -> bool:
    """Whether two measurements of the same index on the same statement differ beyond the clock's
    noise, by the rule the selection's ties use: the savings (gain as a fraction) more than 10%
    apart *and* their 95% intervals (from the time ratio's) disjoint. A gain on one side only (the
    other could only be costed) is another kind of evidence: apart.

    >>> told_apart(50.0, [0.46, 0.54], 56.0, [0.40, 0.48])
    False
    >>> told_apart(50.0, [0.46, 0.54], 80.0, [0.15, 0.25])
    True
    """
    if gain_a is None or gain_b is None:
        return (gain_a is None) != (gain_b is None)
    a, b = gain_a / 100.0, gain_b / 100.0
    if abs(a - b) <= NET_NOISE * max(abs(a), abs(b)):
        return False
    if ci_a and ci_b:
        lo_a, hi_a = 1 - ci_a[1], 1 - ci_a[0]
        lo_b, hi_b = 1 - ci_b[1], 1 - ci_b[0]
        return hi_a < lo_b or hi_b < lo_a
    return True


def summarize(rows: list[dict], fingerprint_of: dict[int, str]) -> list[dict]:
    """An audit's measurements as its selection saw them, keyed by statement fingerprint and index
    definition, for the next audit of the same target (`anchor`)."""
    out = []
    for r in rows:
        if r.get("status") != "measured" or r["queryid"] not in fingerprint_of:
            continue
        ev = r.get("evidence") or {}
        out.append({"fingerprint": fingerprint_of[r["queryid"]], "ddl": r["ddl"],
                    **{k: r.get(k) for k in MEASUREMENT_KEYS}, "index_used": bool(ev.get("index_used")),
                    "evidence": {**{k: ev[k] for k in EVIDENCE_KEYS if k in ev},
                                 **{side: {k: (ev.get(side) or {}).get(k) for k in TIMING_KEYS}
                                    for side in ("before", "after")}}})
    return out


def _brief(gain: float | None, ci: list[float] | None) -> dict:
    return {"gain": None if gain is None else round(gain, 1), "ratio_ci": ci}


def anchor(rows: list[dict], fingerprint_of: dict[int, str], previous: list[dict]) -> list[dict]:
    """The rows the selection decides on: each measured row that the previous audit measured too
    (same statement fingerprint, same definition, the plan using the index alike) and that is not
    told apart from that measurement takes the previous measurement whole (`anchored` in its
    evidence, with both); one told apart keeps its own (`moved`, with both). Other rows are as given."""
    before = {(p["fingerprint"], p["ddl"]): p for p in previous}
    out = []
    for r in rows:
        p = before.get((fingerprint_of.get(r["queryid"]), r["ddl"])) if r.get("status") == "measured" else None
        if p is None:
            out.append(r)
            continue
        ev = r.get("evidence") or {}
        now, then = _brief(r.get("measured_gain_pct"), ratio_ci(r)), _brief(p.get("measured_gain_pct"), ratio_ci(p))
        if bool(ev.get("index_used")) == p.get("index_used") and not told_apart(
                p.get("measured_gain_pct"), ratio_ci(p), r.get("measured_gain_pct"), ratio_ci(r)):
            kept = {k: v for k, v in ev.items() if k not in EVIDENCE_KEYS}
            then_ev = p.get("evidence") or {}
            for side in ("before", "after"):
                kept[side] = {**(ev.get(side) or {}), **(then_ev.get(side) or {})}
            note = {"now": now, "previous": then,
                    "why": "measured again within the clock's noise of the previous audit's measurement, "
                           "which stands (the evidence has not changed)"}
            out.append({**r, **{k: p[k] for k in MEASUREMENT_KEYS if k in p},
                        "evidence": {**kept, **{k: v for k, v in then_ev.items() if k in EVIDENCE_KEYS},
                                     "anchored": note}})
        else:
            out.append({**r, "evidence": {**ev, "moved": {"now": now, "previous": then,
                                                          "why": "apart from the previous audit's measurement "
                                                                 "beyond the clock's noise"}}})
    return out
