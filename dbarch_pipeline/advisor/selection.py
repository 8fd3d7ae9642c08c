"""Workload-wide index selection: which measured candidates to recommend, all statements together.

Every candidate was timed against each statement on its table (see bench.runner), so we know, per
index and statement, the milliseconds saved per call. Weighted by how often each statement runs
(calls per second over the pg_stat_statements window), that is the index's read benefit; its upkeep
is the table's write rate times the write cost per row measured for that index. A greedy pass, in
the manner of Microsoft's DTA, then picks the index with the largest net benefit given what is
already picked, until nothing adds a meaningful gain or the storage budget / index count runs out.
One index that serves several statements therefore beats several narrower ones, a statement made
slower counts against an index, and an index whose upkeep outweighs its reads is declined.

>>> rows = [dict(queryid=1, ddl="A", status="measured", ms_before=10.0, ms_after=1.0, measured_gain_pct=90.0,
...              estimated_gain_pct=90.0, confidence=0.9, cost_after=1.0,
...              evidence={"index_used": True, "index_bytes": 100, "spec": {"schema": "s", "table": "t"}})]
>>> sel = select_indexes(rows, {1: 1.0}, table_writes={}, min_gain_pct=10)
>>> [c.ddl for c in sel.chosen], sel.assignment[1]["ddl"]
(['A'], 'A')
"""

from __future__ import annotations

from dataclasses import dataclass, field

MARGINAL_WRITE_SHARE = 0.5   # upkeep above half the read benefit makes an index marginal


@dataclass
class IndexChoice:
    ddl: str
    table: str
    index_bytes: int
    write_cost_ms_per_s: float
    savings: dict[int, float] = field(default_factory=dict)   # queryid -> ms saved per second
    rows: dict[int, dict] = field(default_factory=dict)       # queryid -> benchmark row
    net_benefit_ms_per_s: float = 0.0

    @property
    def read_benefit_ms_per_s(self) -> float:
        return sum(v for v in self.savings.values() if v > 0)

    @property
    def marginal(self) -> bool:
        return self.write_cost_ms_per_s > MARGINAL_WRITE_SHARE * max(self.read_benefit_ms_per_s, 1e-12)


@dataclass
class Selection:
    chosen: list[IndexChoice]
    assignment: dict[int, dict]            # queryid -> the benchmark row of the index that serves it
    declined: dict[str, str]               # ddl -> why it is not recommended


def _gain(row: dict) -> float | None:
    return row["measured_gain_pct"] if row["measured_gain_pct"] is not None else row["estimated_gain_pct"]


def select_indexes(benchmarks: list[dict], calls_per_second: dict[int, float], *,
                   table_writes: dict[str, dict], min_gain_pct: float,
                   storage_budget_bytes: int | None = None, max_indexes: int | None = None,
                   observed_ms: dict[int, float] | None = None) -> Selection:
    """calls_per_second: each statement's call rate; table_writes: {schema.table: {rows, seconds}};
    observed_ms: each statement's mean time in pg_stat_statements. The sampled parameters may be
    heavier or lighter than what the application sends, so a saving is the measured fraction of
    the time the application really spends, not the sandbox's absolute milliseconds."""
    options: dict[str, IndexChoice] = {}
    declined: dict[str, str] = {}
    baseline_rate: dict[int, float] = {}
    for row in benchmarks:
        if (row["evidence"].get("spec") or {}).get("kind") == "rewrite":
            continue
        if row["status"] != "measured":
            why = row["evidence"].get("why") or f"benchmark failed: {row['evidence'].get('error')}"
            declined.setdefault(row["ddl"], why)
            continue
        ev = row["evidence"]
        spec = ev.get("spec") or {}
        if spec.get("kind") == "rewrite":
            continue   # a rewrite serves one statement and costs no upkeep: chosen per statement
        table = f"{spec.get('schema', '')}.{spec.get('table', '')}"
        choice = options.get(row["ddl"])
        if choice is None:
            writes = table_writes.get(table) or {}
            rate = writes.get("rows", 0) / writes["seconds"] if writes.get("seconds") else 0.0
            choice = options[row["ddl"]] = IndexChoice(
                ddl=row["ddl"], table=table, index_bytes=int(ev.get("index_bytes") or 0),
                write_cost_ms_per_s=rate * float(ev.get("write_ms_per_row") or 0.0))
        qid = row["queryid"]
        per_second = calls_per_second.get(qid, 0.0)
        before = row["ms_before"] if row["ms_before"] is not None else None
        gain = _gain(row)
        if ev.get("regression") and before is not None:
            observed = (observed_ms or {}).get(qid) or before
            choice.savings[qid] = per_second * observed * (before - row["ms_after"]) / before   # negative
            choice.rows[qid] = row
            continue
        if not ev.get("index_used") or gain is None or gain < min_gain_pct:
            continue
        observed = (observed_ms or {}).get(qid)
        if observed:
            before, after = observed, observed * (1.0 - gain / 100.0)
        elif before is None:
            # only costed (no values to time with): count the planner's estimate, conservatively
            before, after = 1.0, 1.0 - gain / 100.0
        else:
            after = row["ms_after"]
        baseline_rate[qid] = per_second * before
        choice.savings[qid] = per_second * (before - after)
        choice.rows[qid] = row

    current: dict[int, float] = {}
    chosen: list[IndexChoice] = []
    used_bytes = 0
    while True:
        best, best_net = None, 0.0
        for ddl, choice in options.items():
            if choice in chosen or ddl in declined:
                continue
            improvements = {q: s - current.get(q, 0.0) for q, s in choice.savings.items() if s > 0}
            # it must fix something that is not fixed yet, by the same bar as a single statement
            meaningful = [q for q, d in improvements.items()
                          if baseline_rate.get(q) and d >= baseline_rate[q] * min_gain_pct / 100.0]
            if not meaningful:
                continue
            regressions = sum(s for s in choice.savings.values() if s < 0)
            net = sum(max(0.0, d) for d in improvements.values()) + regressions - choice.write_cost_ms_per_s
            if net <= 0:
                continue
            if storage_budget_bytes is not None and used_bytes + choice.index_bytes > storage_budget_bytes:
                continue
            if net > best_net:
                best, best_net = choice, net
        if best is None or (max_indexes is not None and len(chosen) >= max_indexes):
            break
        best.net_benefit_ms_per_s = best_net
        chosen.append(best)
        used_bytes += best.index_bytes
        for q, s in best.savings.items():
            if s > current.get(q, 0.0):
                current[q] = s

    for ddl, choice in options.items():
        if choice in chosen or ddl in declined or not choice.read_benefit_ms_per_s:
            continue
        if choice.write_cost_ms_per_s >= choice.read_benefit_ms_per_s:
            declined[ddl] = (f"write upkeep {choice.write_cost_ms_per_s:.3f} ms/s outweighs the read benefit "
                             f"{choice.read_benefit_ms_per_s:.3f} ms/s")
        elif any(r["evidence"].get("regression") for r in choice.rows.values()):
            declined[ddl] = "makes another statement slower"
        elif storage_budget_bytes is not None and used_bytes + choice.index_bytes > storage_budget_bytes:
            declined[ddl] = "does not fit the storage budget"
        elif max_indexes is not None and len(chosen) >= max_indexes:
            declined[ddl] = "beyond the configured number of indexes"
        else:
            declined[ddl] = "a chosen index already serves its statements as well"

    assignment: dict[int, dict] = {}
    for choice in chosen:
        for q, s in choice.savings.items():
            if s > 0 and (q not in assignment or s > _saving_of(assignment[q], options, q)):
                assignment[q] = choice.rows[q]
    return Selection(chosen=chosen, assignment=assignment, declined=declined)


def _saving_of(row: dict, options: dict[str, IndexChoice], q: int) -> float:
    return options[row["ddl"]].savings.get(q, 0.0)
