"""Workload-wide index selection: which measured candidates to recommend, all statements together.

Every candidate was timed against each statement on its table (see bench.runner), so we know, per
index and statement, the milliseconds saved per call; a statement over several tables was also
timed with the best candidates of each table built together (a *configuration*). Weighted by how
often each statement runs (calls per second over the pg_stat_statements window), that is the read
benefit; upkeep is the table's write rate in the same window times the write cost per row measured
for that index. A greedy pass, in the manner of Microsoft's DTA, then adds the move (one index, or
the missing members of a configuration) with the largest net benefit given what is already picked.
A statement's saving under a set of indexes is the best of what any single index of the set, or any
configuration wholly inside the set, measured for it: a join that needs two indexes is credited only
when both are picked.

There is no count cap by default: the pass stops when no move's saving clears its cost, judged at
the low end of the clock's 95% interval (the saving the measurements vouch for, minus the write
upkeep in the same window and any statement it slows), or when the optional storage budget runs
out. A move counts only when the clock tells its improvement apart from noise (its bootstrap
interval clears the current one, or the two measurements, taken with the same parameter sets,
compared set by set with the new one nowhere slower: bench.evaluate.paired_interval; for a
statement nothing serves yet, the planner's estimate may vouch for timings that stay within noise). Moves not told apart from the best (within 10%, or
overlapping intervals) tie, unless one leaves some statement at least twice the time the best
leaves it by whole intervals (savings within 10% in milliseconds can still leave one statement 8x
slower than the other); ties go to fewer new indexes, the smaller size (by powers of two), the
surer benefit (the low end of the interval, by 25% steps), the planner's estimate, then the name.

A final pass makes the set the same on every run over unchanged data: each chosen index, the most
complex first, is dropped when the rest serve every statement as well within noise, or replaced by
a smaller, simpler index of the same table that does (smaller by powers of two, then the shorter
definition, then the name; never which timing came out faster). An explicit `max_indexes` keeps
the proven picks beyond it ranked as *next in line*.

A re-run decides on the same evidence: the rows given here take the previous audit's measurement
wherever a new one agrees with it within noise (advisor.stability.anchor, applied by
audit.select_for_snapshot), so unchanged evidence gives the same set; `previous` names which of the
previous audit's proposals still stand (`stability` in the result) and makes a statement with a
standing verdict demand that an index measured for the first time clear the bar with its whole
interval. Where a measurement moved beyond noise the verdict is open again, but not to noise: ties
go to the previous audit's proposals first, and the final pass neither replaces a previous proposal
by an index that serves no better beyond noise nor drops one that still serves a statement best.

>>> rows = [dict(queryid=1, ddl="A", status="measured", ms_before=10.0, ms_after=1.0, measured_gain_pct=90.0,
...              estimated_gain_pct=90.0, confidence=0.9, cost_after=1.0,
...              evidence={"index_used": True, "index_bytes": 100, "spec": {"schema": "s", "table": "t"}})]
>>> sel = select_indexes(rows, {1: 1.0}, table_writes={}, min_gain_pct=10)
>>> [c.ddl for c in sel.chosen], sel.assignment[1]["ddl"]
(['A'], 'A')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..bench.evaluate import MEANINGFUL_SPEEDUP, TARGET_SPEEDUP, paired_interval
from ..bench.writes import index_columns, upkeep_rows
from .stability import NET_NOISE

MARGINAL_WRITE_SHARE = 0.5   # upkeep above half the read benefit makes an index marginal
# NET_NOISE (advisor.stability): moves whose net benefits are this close (relative) tie


@dataclass
class IndexChoice:
    ddl: str
    table: str
    index_bytes: int
    write_cost_ms_per_s: float
    savings: dict[int, float] = field(default_factory=dict)   # queryid -> ms saved per second
    rows: dict[int, dict] = field(default_factory=dict)       # queryid -> benchmark row
    net_benefit_ms_per_s: float = 0.0
    set_savings: dict[int, float] = field(default_factory=dict)  # queryid -> saving as part of a configuration
    bounds: dict[int, tuple[float, float]] = field(default_factory=dict)  # queryid -> saving's 95% interval
    planned: dict[int, float] = field(default_factory=dict)   # queryid -> saving by the planner's estimate
    rank: int = 0                                               # order in which the greedy pass picked it
    write_notes: list[str] = field(default_factory=list)       # why its upkeep is more or less than every row
    previous_verdict: str | None = None                         # how the previous audit's verdict weighed in

    @property
    def read_benefit_ms_per_s(self) -> float:
        return sum(v for v in self.savings.values() if v > 0)

    @property
    def marginal(self) -> bool:
        reads = max(self.read_benefit_ms_per_s, sum(self.set_savings.values()), 1e-12)
        return self.write_cost_ms_per_s > MARGINAL_WRITE_SHARE * reads

    def serves(self) -> list[int]:
        return sorted({q for q, v in self.savings.items() if v > 0} | set(self.set_savings))


@dataclass
class Configuration:
    """Indexes measured together for one statement (a join that filters one table and looks up
    another by its key): credited only when every member is picked."""

    members: tuple[str, ...]
    savings: dict[int, float] = field(default_factory=dict)
    rows: dict[int, dict] = field(default_factory=dict)
    bounds: dict[int, tuple[float, float]] = field(default_factory=dict)
    planned: dict[int, float] = field(default_factory=dict)


@dataclass
class PreviousVerdicts:
    """The previous audit of the same target: the indexes it proposed (its current proposed rows:
    ddl -> statements) and the statements it measured. The rows given to the selection say which
    measurements stand from that audit (`anchored`) and which moved beyond noise (`moved`; see
    advisor.stability). Empty for a first audit."""

    proposed: dict[str, set[int]] = field(default_factory=dict)
    measured: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.proposed or self.measured)


@dataclass
class Selection:
    chosen: list[IndexChoice]
    assignment: dict[int, dict]            # queryid -> the benchmark row of the index (or configuration) serving it
    declined: dict[str, str]               # ddl -> why it is not recommended
    next_in_line: list[IndexChoice] = field(default_factory=list)   # proven, beyond max_indexes, ranked
    # the previous audit's verdicts: held (ddl -> why it still holds), released (ddl -> what moved),
    # kept (chosen only because the previous verdict holds: ddl -> what the clock alone would pick)
    stability: dict = field(default_factory=dict)

    def choice_of(self, ddl: str) -> IndexChoice | None:
        return next((c for c in self.chosen if c.ddl == ddl), None)


def _steps(value: float, base: float = 1.25) -> int:
    return round(math.log(value) / math.log(base)) if value > 0 else -(1 << 30)


def _gain(row: dict) -> float | None:
    return row["measured_gain_pct"] if row["measured_gain_pct"] is not None else row["estimated_gain_pct"]


def members_of(row: dict) -> tuple[str, ...]:
    """The indexes a benchmark row measured: one, or a configuration's members."""
    members = row["evidence"].get("configuration")
    return tuple(m["ddl"] for m in members) if members else (row["ddl"],)


def _hysteresis(benchmarks: list[dict], previous: PreviousVerdicts
                ) -> tuple[dict[str, dict[int, str]], dict[str, str], set[int]]:
    """Which of the previous audit's proposals still hold: on every statement it was proposed for
    that is measured again, some measurement of it (alone, or in a configuration) stands from the
    previous audit (`anchored`). Returns held (ddl -> statement -> how it compares), released (ddl ->
    what moved beyond noise) and the settled statements: measured by the previous audit, with no
    measurement moved beyond noise since."""
    rows: dict[tuple[str, int], list[dict]] = {}
    moved: set[int] = set()
    for row in benchmarks:
        ev = row["evidence"]
        if row["status"] != "measured" or (ev.get("spec") or {}).get("kind") == "rewrite":
            continue
        if ev.get("moved"):
            moved.add(row["queryid"])
        for ddl in members_of(row):
            rows.setdefault((ddl, row["queryid"]), []).append(row)
    held: dict[str, dict[int, str]] = {}
    released: dict[str, str] = {}
    for ddl, statements in sorted(previous.proposed.items()):
        notes: dict[int, str] = {}
        for q in sorted(statements):
            mine = rows.get((ddl, q), [])
            stands = [r["evidence"]["anchored"] for r in mine if r["evidence"].get("anchored")]
            went = [r["evidence"]["moved"] for r in mine if r["evidence"].get("moved")]
            if stands:
                a = max(stands, key=lambda n: n["previous"]["gain"] if n["previous"]["gain"] is not None else -1e9)
                notes[q] = f"statement {q}: {_pct(a['previous']['gain'])} then, {_pct(a['now']['gain'])} now"
            elif went:
                m = went[0]
                released[ddl] = (f"statement {q}: {_pct(m['previous']['gain'])} then, {_pct(m['now']['gain'])} now, "
                                 "apart beyond the clock's noise")
                break
        if ddl not in released and notes:
            held[ddl] = notes
    return held, released, set(previous.measured) - moved


def _pct(gain: float | None) -> str:
    return "costed only" if gain is None else f"{gain:.1f}%"


def select_indexes(benchmarks: list[dict], calls_per_second: dict[int, float], *,
                   table_writes: dict[str, dict], min_gain_pct: float,
                   storage_budget_bytes: int | None = None, max_indexes: int | None = None,
                   observed_ms: dict[int, float] | None = None,
                   previous: PreviousVerdicts | None = None) -> Selection:
    """calls_per_second: each statement's call rate; table_writes: {schema.table: {rows, seconds}};
    observed_ms: each statement's mean time in pg_stat_statements. The sampled parameters may be
    heavier or lighter than what the application sends, so a saving is the measured fraction of
    the time the application really spends, not the sandbox's absolute milliseconds.

    previous: the previous audit of the same target (see PreviousVerdicts and advisor.stability);
    None or empty for a first audit, which is then decided by the clock alone."""
    previous = previous or PreviousVerdicts()
    # statements with a standing verdict (measured by the previous audit, nothing moved beyond noise
    # since): an index measured for the first time must clear the bar with its whole interval
    held, released, settled = _hysteresis(benchmarks, previous)
    proposed_before = set(previous.proposed)
    options: dict[str, IndexChoice] = {}
    configurations: dict[tuple[str, ...], Configuration] = {}
    declined: dict[str, str] = {}
    baseline_rate: dict[int, float] = {}

    specs = {r["ddl"]: r["evidence"]["spec"] for r in benchmarks if (r["evidence"].get("spec") or {}).get("columns")}

    def option(ddl: str, table: str, index_bytes: int, write_ms_per_row: float) -> IndexChoice:
        if ddl not in options:
            writes = table_writes.get(table) or {}
            rows, notes = upkeep_rows(writes, index_columns(specs[ddl]) if ddl in specs else None)
            rate = rows / writes["seconds"] if writes.get("seconds") else 0.0
            options[ddl] = IndexChoice(ddl=ddl, table=table, index_bytes=index_bytes,
                                       write_cost_ms_per_s=rate * write_ms_per_row, write_notes=notes)
        return options[ddl]

    for row in sorted(benchmarks, key=lambda r: (r["queryid"], r["ddl"])):
        ev = row["evidence"]
        spec = ev.get("spec") or {}
        if spec.get("kind") == "rewrite" or row["status"] in ("unmeasured", "skipped"):
            continue   # a rewrite is chosen per statement; an unmeasured statement has its reason
        if row["status"] != "measured":
            if not ev.get("configuration"):
                declined.setdefault(row["ddl"], ev.get("why") or f"benchmark failed: {ev.get('error')}")
            continue
        qid = row["queryid"]
        if ev.get("configuration"):
            for m in ev["configuration"]:
                option(m["ddl"], m["table"], int(m.get("index_bytes") or 0), float(m.get("write_ms_per_row") or 0.0))
            target: IndexChoice | Configuration = configurations.setdefault(members_of(row),
                                                                           Configuration(members_of(row)))
        else:
            target = option(row["ddl"], f"{spec.get('schema', '')}.{spec.get('table', '')}",
                            int(ev.get("index_bytes") or 0), float(ev.get("write_ms_per_row") or 0.0))
        per_second = calls_per_second.get(qid, 0.0)
        before = row["ms_before"]
        gain = _gain(row)
        if ev.get("regression") and before is not None and isinstance(target, IndexChoice):
            observed = (observed_ms or {}).get(qid) or before
            target.savings[qid] = per_second * observed * (before - row["ms_after"]) / before   # negative
            target.rows[qid] = row
            continue
        if not ev.get("index_used") or gain is None or gain < min_gain_pct:
            continue
        observed = (observed_ms or {}).get(qid)
        if observed and ev.get("measured_as") and before:
            # a write timed by its row-finding SELECT: what that half saves, never more than the write takes
            before, after = observed, observed - min(observed, before) * gain / 100.0
        elif observed:
            before, after = observed, observed * (1.0 - gain / 100.0)
        elif before is None:
            # only costed (no values to time with): count the planner's estimate, conservatively
            before, after = 1.0, 1.0 - gain / 100.0
        else:
            after = row["ms_after"]
        baseline_rate[qid] = per_second * before
        target.savings[qid] = per_second * (before - after)
        target.rows[qid] = row
        if row["estimated_gain_pct"] is not None:
            target.planned[qid] = per_second * before * max(0.0, row["estimated_gain_pct"]) / 100.0
        ci = (ev.get("confidence_parts") or {}).get("ratio_ci")
        if ci and row["ms_before"]:
            # the bootstrap interval of the time ratio, applied to the same base as the saving
            target.bounds[qid] = (per_second * before * (1 - ci[1]), per_second * before * (1 - ci[0]))

    def holders_of(picked: set[str]) -> list[IndexChoice | Configuration]:
        return ([options[ddl] for ddl in sorted(picked)]
                + [c for _, c in sorted(configurations.items()) if set(c.members) <= picked])

    def saving(picked: set[str], side: int | str | None = None) -> dict[int, float]:
        """Each statement's best saving under the set; side 0 / 1: the low / high end of its interval,
        "planner": by the planner's estimate."""
        best: dict[int, float] = {}
        for holder in holders_of(picked):
            for q, s in holder.savings.items():
                if side == "planner":
                    s = holder.planned.get(q, 0.0) if s > 0 else s
                elif side is not None and s > 0:
                    s = holder.bounds.get(q, (s, s))[side]
                if s > best.get(q, 0.0):
                    best[q] = s
        return best

    def serving_row(picked: set[str], q: int) -> dict | None:
        """The benchmark row behind the statement's best saving under the set (as `saving` picks it)."""
        best, row = 0.0, None
        for holder in holders_of(picked):
            s = holder.savings.get(q, 0.0)
            if s > best:
                best, row = s, holder.rows.get(q)
        return row

    def far_slower(a: set[str], b: set[str]) -> bool:
        """Whether `a` leaves some statement at least TARGET_SPEEDUP times the time `b` leaves it, by
        whole intervals (the low end of what `a` leaves against the high end of what `b` leaves).
        Savings close in milliseconds can hide a large factor in what is left: 19.3 ms cut to 1.9 or
        to 0.23 ms saves within 10% either way, but one statement runs 8x slower than the other."""
        high_a, low_b = saving(a, 1), saving(b, 0)
        for q, base in baseline_rate.items():
            left_a, left_b = base - high_a.get(q, 0.0), base - low_b.get(q, 0.0)
            if base > 0 and left_b > 0 and left_a >= TARGET_SPEEDUP * left_b:
                return True
        return False

    paired_cache: dict[tuple[int, int], tuple[float, float] | None] = {}

    def paired_gain(q: int, new_set: set[str], cur_set: set[str], cur_saving: float) -> float | None:
        """The low end of what `new_set` saves on the statement beyond `cur_set`, when the two
        measurements serving it were taken with the same parameter sets and the new one is faster
        on them set by set beyond the clock's noise (bench.evaluate.paired_interval); None otherwise."""
        new_row, cur_row = serving_row(new_set, q), serving_row(cur_set, q)
        if new_row is None or cur_row is None or new_row is cur_row:
            return None
        key = (id(new_row), id(cur_row))
        if key not in paired_cache:
            paired_cache[key] = paired_interval(new_row, cur_row)
        ci = paired_cache[key]
        if ci is None or ci[1] >= 1 - MEANINGFUL_SPEEDUP:
            return None
        return max(0.0, baseline_rate.get(q, 0.0) - cur_saving) * (1 - ci[1])

    moves: list[tuple[str, ...]] = [(ddl,) for ddl in sorted(options)]
    moves += sorted(c.members for c in configurations.values())
    picked: list[str] = []
    picks: list[tuple[tuple[str, ...], float, bool]] = []   # (new indexes, net, within the cap)
    used_bytes = 0
    current: dict[int, float] = {}
    current_high: dict[int, float] = {}
    current_planned: dict[int, float] = {}
    capped = max_indexes is not None
    while True:
        scored = []
        for move in moves:
            new = [d for d in move if d not in picked]
            if not new or any(d in declined for d in new):
                continue
            if capped and len(picked) + len(new) > max_indexes:
                continue
            after = saving(set(picked) | set(new))
            improvements = {q: s - current.get(q, 0.0) for q, s in after.items() if s > current.get(q, 0.0)}
            # it must fix something that is not fixed yet, by the same bar as a single statement, and
            # the clock must tell the improvement apart (the new low end beats the current high end);
            # a statement nothing serves yet whose timings stay within noise may instead be vouched
            # for by the planner's estimate. Near-bar noise then cannot flip the choice.
            low, planned = saving(set(picked) | set(new), 0), saving(set(picked) | set(new), "planner")
            # a statement served before and after, by measurements with the same parameter sets:
            # compared set by set, where the values' own spread does not blur the clock's verdict
            paired = {q: g for q in improvements if current.get(q, 0.0) > 0
                      and (g := paired_gain(q, set(picked) | set(new), set(picked), current[q])) is not None}
            # on a statement with a standing verdict, a measurement that is not the previous audit's
            # (new this time) must clear the bar with its whole interval to change that verdict
            fresh = {q for q in improvements if q in settled and not any(
                r["evidence"].get("anchored") for r in (serving_row(set(picked) | set(new), q),) if r)}

            def meaningful(q: int, d: float) -> bool:
                bar = baseline_rate.get(q, 0.0) * min_gain_pct / 100.0
                if not bar or d < bar:
                    return False
                if q in fresh:
                    return ((low.get(q, 0.0) - current.get(q, 0.0) >= bar and low.get(q, 0.0) > current_high.get(q, 0.0))
                            or paired.get(q, 0.0) >= bar
                            or (current.get(q, 0.0) <= 0 and planned.get(q, 0.0) >= bar))
                if low.get(q, 0.0) > current_high.get(q, 0.0) or q in paired:
                    return True
                return current.get(q, 0.0) <= 0 and planned.get(q, 0.0) >= bar

            if not any(meaningful(q, d) for q, d in improvements.items()):
                continue
            regressions = sum(s for d in new for s in options[d].savings.values() if s < 0)
            upkeep = regressions - sum(options[d].write_cost_ms_per_s for d in new)
            net = sum(improvements.values()) + upkeep
            spread = []
            for side in (0, 1):
                gains = {q: max(0.0, v - current.get(q, 0.0)) for q, v in saving(set(picked) | set(new), side).items()}
                if side == 0:
                    gains.update({q: max(gains.get(q, 0.0), g) for q, g in paired.items()})
                spread.append(sum(gains.values()) + upkeep)
            planner = sum(max(0.0, v) for v in saving(set(picked) | set(new), "planner").values()) + upkeep
            # the planner vouches only for statements whose timings the clock could not tell apart
            vouched = sum(max(0.0, v - current_planned.get(q, 0.0)) for q, v in planned.items()
                          if low.get(q, 0.0) <= 0) + upkeep
            size = sum(options[d].index_bytes for d in new)
            # the stopping rule: what the move saves must clear its upkeep (writes in the same window,
            # and any statement it slows) at the low end of the clock's interval, or, for statements
            # whose timings stay within noise, by the planner's estimate
            if net <= 0 or max(spread[0], vouched) <= 0:
                continue
            if storage_budget_bytes is not None and used_bytes + size > storage_budget_bytes:
                continue
            scored.append((net, len(new), size, tuple(new), spread[0], spread[1], planner))
        if not scored:
            if capped:
                capped = False   # the cap is reached: go on ranking what would come next
                continue
            break
        best = max(scored, key=lambda s: (s[0], -s[1], s[3]))
        # not told apart from the best (close, or their measured intervals overlap): a tie, broken
        # by fewer new indexes, the smaller size (by powers of two: the same on every run over
        # unchanged data, and less to store and maintain for a benefit the clock cannot tell apart),
        # the surer benefit (the low end of its interval, by 25% steps), the planner's estimate, then
        # the name
        ties = [s for s in scored if (s[0] >= best[0] * (1 - NET_NOISE) or s[5] >= best[4])
                and not far_slower(set(picked) | set(s[3]), set(picked) | set(best[3]))]
        # a re-run keeps the previous audit's proposal among moves the clock cannot tell apart: the
        # evidence has not changed materially, so neither does the verdict (advisor.stability)
        net, _, size, new, *_ = min(ties, key=lambda s: (sum(d not in proposed_before for d in s[3]), s[1],
                                                         round(math.log2(s[2] + 1)), -_steps(s[4]),
                                                         -_steps(s[6]), s[3]))
        picks.append((new, net, capped or max_indexes is None))
        picked.extend(new)
        used_bytes += size
        current = saving(set(picked))
        current_high, current_planned = saving(set(picked), 1), saving(set(picked), "planner")

    def upkeep_of(ddls: set[str]) -> float:
        return (sum(s for d in ddls for s in options[d].savings.values() if s < 0)
                - sum(options[d].write_cost_ms_per_s for d in ddls))

    def holds(before: set[str], after: set[str]) -> bool:
        """Whether the clock cannot tell `after` from `before`: every statement `before` serves keeps
        its saving within noise (within 10%, or its interval under `after` reaches the low end of
        its interval under `before`) and stays above the bar if it was, and upkeep does not grow."""
        point, low = saving(before), saving(before, 0)
        point2, high2 = saving(after), saving(after, 1)
        for q, s in point.items():
            if s <= 0:
                continue
            s2, bar = point2.get(q, 0.0), baseline_rate.get(q, 0.0) * min_gain_pct / 100.0
            if s >= bar > s2:
                return False
            if s2 < s * (1 - NET_NOISE) and (high2.get(q, 0.0) < low.get(q, 0.0)
                                             or paired_gain(q, before, after, s2) is not None):
                return False
        if far_slower(after, before):
            return False
        up, up2 = upkeep_of(before), upkeep_of(after)
        return up2 >= up - NET_NOISE * abs(up)

    def simplicity(ddl: str) -> tuple:
        # the previous audit's proposals first (a re-run keeps them while the rest serve no better
        # beyond noise), then smaller (by powers of two, as the tie rule), then the shorter
        # definition (fewer columns, no INCLUDE), then the name: never which timing came out faster
        return (ddl not in proposed_before, round(math.log2(options[ddl].index_bytes + 1)), len(ddl), ddl)

    def needed(ddl: str, whole: set[str]) -> bool:
        """Whether some statement's best saving comes from `ddl` (alone or in a configuration)."""
        without = saving(whole - {ddl})
        return any(without.get(q, 0.0) < s for q, s in saving(whole).items() if s > 0)

    def canonical(fixed: set[str], movable: list[str]) -> dict[str, str | None]:
        """The same set on every run over unchanged data: each movable index, the most complex
        first, is dropped when the rest serve as well within noise, or replaced by a simpler
        index of its table that does; repeated until nothing changes. Returns old -> new (None:
        dropped)."""
        now = list(movable)
        changes: dict[str, str | None] = {}
        changed = True
        while changed:
            changed = False
            whole = fixed | set(now)
            for ddl in sorted(now, key=simplicity, reverse=True):
                table = options[ddl].table
                alternatives: list[str | None] = [None] + sorted(
                    (o for o in options if o not in whole and o not in declined and options[o].table == table
                     and any(v > 0 for v in options[o].savings.values()) and simplicity(o) < simplicity(ddl)),
                    key=simplicity)
                for alt in alternatives:
                    if alt is None and ddl in proposed_before and needed(ddl, whole):
                        continue   # a standing proposal still serving a statement best is not dropped on noise
                    after = (whole - {ddl}) | ({alt} if alt else set())
                    if storage_budget_bytes is not None and alt and sum(
                            options[d].index_bytes for d in after) > storage_budget_bytes:
                        continue
                    if holds(whole, after):
                        origin = next((k for k, v in changes.items() if v == ddl), ddl)
                        changes[origin] = alt
                        now = [alt if d == ddl else d for d in now if alt or d != ddl]
                        changed = True
                        break
                if changed:
                    break
        return changes

    within = [d for new, _, inside in picks if inside for d in new]
    beyond = [d for new, _, inside in picks if not inside for d in new]
    changes = canonical(set(), within)
    changes |= canonical({changes.get(d, d) for d in within if changes.get(d, d)}, beyond)
    if changes:
        renamed = [(tuple(changes.get(d, d) for d in new if changes.get(d, d)), inside) for new, _, inside in picks]
        picks, so_far = [], set()
        for new, inside in renamed:
            new = tuple(d for d in dict.fromkeys(new) if d not in so_far)
            if not new:
                continue
            before_value = sum(v for v in saving(so_far).values() if v > 0) + upkeep_of(so_far)
            so_far |= set(new)
            net = sum(v for v in saving(so_far).values() if v > 0) + upkeep_of(so_far) - before_value
            picks.append((new, net, inside))
        used_bytes = sum(options[d].index_bytes for new, _, inside in picks if inside for d in new)

    chosen: list[IndexChoice] = []
    next_in_line: list[IndexChoice] = []
    for rank, (new, net, within) in enumerate(picks, 1):
        for ddl in new:
            choice = options[ddl]
            choice.net_benefit_ms_per_s = net / len(new)
            choice.rank = rank
            (chosen if within else next_in_line).append(choice)
    in_effect = {c.ddl for c in chosen}
    ranked = in_effect | {c.ddl for c in next_in_line}
    for conf in configurations.values():
        if set(conf.members) <= ranked:
            for ddl in conf.members:
                for q, s in conf.savings.items():
                    options[ddl].set_savings[q] = s
                    options[ddl].rows.setdefault(q, conf.rows[q])

    listed = ranked
    for ddl, choice in sorted(options.items()):
        if ddl in listed or ddl in declined or not (choice.read_benefit_ms_per_s or
                                                   any(ddl in c.members and c.savings for c in configurations.values())):
            continue
        reads = choice.read_benefit_ms_per_s
        if reads and choice.write_cost_ms_per_s >= reads:
            declined[ddl] = (f"write upkeep {choice.write_cost_ms_per_s:.3f} ms/s outweighs the read benefit "
                             f"{reads:.3f} ms/s")
        elif any(r["evidence"].get("regression") for r in choice.rows.values()):
            declined[ddl] = "makes another statement slower"
        elif storage_budget_bytes is not None and used_bytes + choice.index_bytes > storage_budget_bytes:
            declined[ddl] = "does not fit the storage budget"
        elif choice.write_cost_ms_per_s and (low := sum(choice.bounds.get(q, (v, v))[0] for q, v in
                                                        choice.savings.items() if v > 0)) <= choice.write_cost_ms_per_s:
            declined[ddl] = (f"its read benefit {reads:.3f} ms/s does not surely clear its write upkeep "
                             f"{choice.write_cost_ms_per_s:.3f} ms/s (low end of the measured interval "
                             f"{low:.3f} ms/s)")
        else:
            declined[ddl] = "a chosen index already serves its statements as well"

    assignment: dict[int, dict] = {}
    best: dict[int, float] = {}
    for choice in chosen:
        for q, s in sorted(choice.savings.items()):
            if s > 0 and s > best.get(q, 0.0):
                assignment[q], best[q] = choice.rows[q], s
    for conf in sorted(configurations.values(), key=lambda c: c.members):
        if set(conf.members) <= in_effect:
            for q, s in sorted(conf.savings.items()):
                if s > best.get(q, 0.0):
                    assignment[q], best[q] = conf.rows[q], s
    stability: dict = {}
    if previous:
        stability = {"held": {d: "; ".join(n.values()) for d, n in held.items()},
                     "released": released, "kept": {}}
        for choice in chosen:
            if choice.ddl in held:
                choice.previous_verdict = ("proposed by the previous audit, whose measurement stands: measured "
                                           "again within noise (" + "; ".join(held[choice.ddl].values()) + ")")
            elif choice.ddl in released:
                choice.previous_verdict = f"proposed by the previous audit, chosen again on new evidence: {released[choice.ddl]}"
    return Selection(chosen=chosen, assignment=assignment, declined=declined, next_in_line=next_in_line,
                     stability=stability)


def note_kept(selection: Selection, alone: Selection) -> None:
    """Name what the previous audit's verdict decided: `alone` is the selection on this audit's own
    measurements, without the previous ones. A chosen index `alone` would not choose was kept
    because the previous verdict still holds within noise; one `alone` would choose instead is
    declined for that reason. Both are said in the evidence and the JSON."""
    if not selection.stability:
        return
    chosen = {c.ddl for c in selection.chosen}
    mine = {c.ddl for c in alone.chosen}
    instead = sorted(mine - chosen)
    kept = selection.stability.setdefault("kept", {})
    for choice in selection.chosen:
        if choice.ddl in mine:
            continue
        kept[choice.ddl] = instead
        choice.previous_verdict = (
            "kept because the previous audit's verdict still holds within noise"
            + (f" ({selection.stability['held'][choice.ddl]})" if choice.ddl in selection.stability.get("held", {})
               else "")
            + (f"; this audit's timings alone would have chosen {', '.join(instead)}" if instead
               else "; this audit's timings alone would have left it out"))
    for ddl in instead:
        selection.declined[ddl] = ("not chosen: the previous audit's verdict on its statements still holds within "
                                   f"noise (its measurements stand; kept: {', '.join(sorted(kept)) or 'none'})")
    selection.stability["alone_would_choose"] = sorted(mine)
