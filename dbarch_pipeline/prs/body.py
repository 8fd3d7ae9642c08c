"""The pull request's title and markdown body: everything a reviewer needs to merge in one read.

For each recommended index: the statement and its statistics, the recommendation and its rationale,
planner cost and measured time before/after with the parameter sets used, both plans (collapsed),
the index's size and write overhead, the confidence and how it was derived, and the similar past
optimizations with their gains. A hidden marker at the end carries the pull request's key, the files
it added and an evidence hash, so a later run recognises its own pull request and can tell whether
the evidence has changed materially since.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..bench.evaluate import PART_MEANING, WEIGHTS
from .migrations import IndexMigration, MigrationFile

MARKER_PREFIX = "<!-- dbarch-pull-request "
MARKER_RE = re.compile(r"<!-- dbarch-pull-request (\{.*?\}) -->", re.S)
# What counts as a material change of evidence for a pull request that was closed without merging:
# another index, or a gain or confidence that moved by at least this much.
MATERIAL_GAIN_POINTS = 10.0
MATERIAL_CONFIDENCE = 0.1
# GitHub refuses bodies over 65,536 characters; plans are cut first.
MAX_BODY_CHARS = 60_000
MAX_PLAN_CHARS = 6_000



@dataclass(frozen=True)
class Change:
    """One index in a pull request: its migration, its files, and the log rows (statements) it serves."""

    index: IndexMigration
    files: tuple[MigrationFile, ...]
    rows: tuple[dict, ...]


@dataclass(frozen=True)
class Body:
    title: str
    text: str
    evidence_hash: str
    marker: dict = field(default_factory=dict)


# -- evidence identity -----------------------------------------------------------------------------

def material(changes: Sequence[Change]) -> list[dict]:
    """The facts a reviewer's decision rests on: which indexes, for which statements, how much faster
    and how sure. Timings jitter from run to run; these only move when the evidence does."""
    out = []
    for change in changes:
        for row in change.rows:
            out.append({"ddl": change.index.create, "fingerprint": row["fingerprint"],
                        "gain": _round(row.get("performance_gain"), 1),
                        "confidence": _round(row.get("confidence"), 2)})
    return sorted(out, key=lambda m: (m["ddl"], m["fingerprint"]))


def evidence_hash(facts: list[dict]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def materially_changed(old: list[dict] | None, new: list[dict]) -> bool:
    """Another set of indexes or statements, or a gain or confidence that moved noticeably. Without
    the old facts (the marker was edited away) nothing can be shown to have changed.

    >>> a = [{"ddl": "x", "fingerprint": "f", "gain": 80.0, "confidence": 0.9}]
    >>> materially_changed(a, [{**a[0], "gain": 84.0, "confidence": 0.95}])
    False
    >>> materially_changed(a, [{**a[0], "gain": 95.0}])
    True
    """
    if not old:
        return False
    if {(m["ddl"], m["fingerprint"]) for m in old} != {(m["ddl"], m["fingerprint"]) for m in new}:
        return True
    before = {(m["ddl"], m["fingerprint"]): m for m in old}
    for m in new:
        o = before[(m["ddl"], m["fingerprint"])]
        if _moved(o.get("gain"), m.get("gain"), MATERIAL_GAIN_POINTS):
            return True
        if _moved(o.get("confidence"), m.get("confidence"), MATERIAL_CONFIDENCE):
            return True
    return False


def same_indexes(old: list[dict] | None, new: list[dict]) -> bool:
    """Whether both name the same indexes (unknown old facts count as the same)."""
    return not old or {m["ddl"] for m in old} == {m["ddl"] for m in new}


def _moved(a: float | None, b: float | None, step: float) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(a - b) >= step - 1e-9


def parse_marker(body: str | None) -> dict | None:
    """The marker dbarch left in a pull request body, or None (not ours, or edited away)."""
    if not body:
        return None
    found = MARKER_RE.findall(body)
    if not found:
        return None
    try:
        value = json.loads(found[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _marker_comment(marker: dict) -> str:
    # '>' is escaped so no value can close the HTML comment early
    text = json.dumps(marker, sort_keys=True).replace(">", "\\u003e")
    return f"{MARKER_PREFIX}{text} -->"


# -- rendering ---------------------------------------------------------------------------------------

def title_for(changes: Sequence[Change]) -> str:
    first = changes[0].index
    if len(changes) == 1:
        return f"dbarch: add index {first.name} on {first.qualified_table}"
    tables = sorted({c.index.qualified_table for c in changes})
    return f"dbarch: add {len(changes)} indexes on {', '.join(tables)}"


def render(changes: Sequence[Change], *, key: str, table_writes: dict[str, dict] | None = None) -> Body:
    """Title and markdown body of the pull request holding `changes`."""
    facts = material(changes)
    digest = evidence_hash(facts)
    marker = {"key": key, "evidence": digest, "material": facts,
              "files": sorted(f.path for c in changes for f in c.files)}
    title = title_for(changes)
    for plan_chars in (MAX_PLAN_CHARS, 1_500, 0):
        parts = [f"## {title}", "", _summary(changes), ""]
        for n, change in enumerate(changes, 1):
            heading = f"### {n}. " if len(changes) > 1 else "### "
            parts += _change_section(change, heading, table_writes or {}, plan_chars)
        parts += _footer(changes)
        text = "\n".join(parts) + "\n\n" + _marker_comment(marker) + "\n"
        if len(text) <= MAX_BODY_CHARS:
            break
    return Body(title=title, text=text, evidence_hash=digest, marker=marker)


def _summary(changes: Sequence[Change]) -> str:
    lines = []
    for change in changes:
        for row in change.rows:
            ev = row.get("evidence") or {}
            lines.append(
                f"- `{change.index.name}`: median {_ms(ev.get('ms_before'))} → {_ms(ev.get('ms_after'))} "
                f"(**{_pct(row.get('performance_gain'))} faster**), planner cost {_num(ev.get('cost_before'))} → "
                f"{_num(ev.get('cost_after'))}, confidence **{_fixed(row.get('confidence'), 2)}**, "
                f"for a statement called {_int(ev.get('calls'))} times")
    return ("Every figure below was measured by dbarch on the sandbox, inside a transaction that was "
            "rolled back: nothing was changed on the database.\n\n" + "\n".join(lines))


def _change_section(change: Change, heading: str, table_writes: dict[str, dict], plan_chars: int) -> list[str]:
    ix = change.index
    out = [f"{heading}Index `{ix.name}` on `{ix.qualified_table}`", ""]
    for i, row in enumerate(change.rows):
        if len(change.rows) > 1:
            out += [f"#### Statement {i + 1} of {len(change.rows)}", ""]
        out += _statement(row)
        out += _recommendation(ix, row)
        out += _measurements(row, plan_chars)
        out += _confidence(row)
        out += _similar(row)
    out += _index_cost(change, table_writes)
    out += _migration_files(change)
    return out


def _statement(row: dict) -> list[str]:
    ev = row.get("evidence") or {}
    return [
        "**The statement**", "",
        _fenced(row["query_text"].strip(), "sql"), "",
        "| calls | total time | mean time | fingerprint |",
        "|---:|---:|---:|---|",
        f"| {_int(ev.get('calls'))} | {_ms(ev.get('total_exec_ms'))} | {_ms(ev.get('mean_exec_ms'))} "
        f"| `{row['fingerprint']}` |",
        "",
    ]


def _recommendation(ix: IndexMigration, row: dict) -> list[str]:
    ev = row.get("evidence") or {}
    out = ["**The recommendation**", "", _fenced(ix.create + ";", "sql"), ""]
    reason = ev.get("reason")
    out.append(f"Why this index: {_cell(reason or row.get('recommendation'))}.")
    if ev.get("cross_statement"):
        out.append("The index was measured for another statement and also serves this one.")
    if ev.get("serves_queryids") and len(ev["serves_queryids"]) > 1:
        out.append(f"It speeds up {len(ev['serves_queryids'])} statements of the workload "
                   f"(queryids {', '.join(str(q) for q in ev['serves_queryids'])}).")
    out.append("")
    return out


def _measurements(row: dict, plan_chars: int) -> list[str]:
    ev = row.get("evidence") or {}
    before, after = ev.get("before") or {}, ev.get("after") or {}
    out = [
        "**Before and after**", "",
        "| | planner cost | median time | shared blocks | indexes used |",
        "|---|---:|---:|---:|---|",
        f"| without the index | {_num(ev.get('cost_before'))} | {_ms(ev.get('ms_before'))} | "
        f"{_blocks(before.get('shared_blocks'))} | {_names(before.get('indexes_used'))} |",
        f"| with the index | {_num(ev.get('cost_after'))} | {_ms(ev.get('ms_after'))} | "
        f"{_blocks(after.get('shared_blocks'))} | {_names(after.get('indexes_used'))} |",
        "",
        f"Measured gain **{_pct(row.get('performance_gain'))}**; the planner expected "
        f"{_pct(row.get('estimated_gain'))}.",
        "",
    ]
    sets = ev.get("parameter_sets") or []
    runs = ev.get("runs_per_set")
    warmup = ev.get("warmup_runs")
    if sets:
        sources = (ev.get("parameter_values") or {}).get("source_counts") or {"sampled from the table's data": ""}
        origin = ", ".join(f"{k} {v}".strip() for k, v in sorted(sources.items()))
        out.append(f"Parameter sets ({len(sets)}; values {origin}; {runs or '?'} timed runs each"
                   + (f" after {warmup} warm-up" if warmup else "") + ", median kept):")
        constants = (ev.get("parameter_values") or {}).get("constants")
        if constants:
            out += ["", f"The constants pg_stat_statements replaced ({', '.join(constants['params'])}) were given back "
                        f"from the {constants['source']}."]
        out += ["", "| # | values | cost before | cost after | median before | median after |",
                "|---:|---|---:|---:|---:|---:|"]
        for n, values in enumerate(sets):
            out.append(f"| {n + 1} | {', '.join(_value(v) for v in values) or '(none)'} "
                       f"| {_num(_at(before.get('costs'), n))} | {_num(_at(after.get('costs'), n))} "
                       f"| {_ms(_median(_at(before.get('timings_ms'), n)))} "
                       f"| {_ms(_median(_at(after.get('timings_ms'), n)))} |")
        out.append("")
    elif (ev.get("confidence_parts") or {}).get("planner_only"):
        out += ["No values could be bound to the statement's parameters, so it was costed by the planner "
                "(generic plan) and not timed.", ""]
    if plan_chars:
        for label, side in (("Plan without the index", before), ("Plan with the index", after)):
            if side.get("plan"):
                out += _details(label, _fenced(_clip(plan_text(side["plan"]), plan_chars), "text"))
    return out


def _confidence(row: dict) -> list[str]:
    ev = row.get("evidence") or {}
    parts = ev.get("confidence_parts") or {}
    confidence = row.get("confidence")
    out = [f"**Confidence {_fixed(confidence, 2)}**", ""]
    if parts.get("planner_only"):
        out += ["Only the planner's estimate was available (nothing timed), so confidence is capped at 0.4 "
                "and scales with the planner's expected gain.", ""]
        return out
    if not parts:
        return out + ["The log holds no breakdown for this confidence.", ""]
    out += ["From the measurements, never a constant: a weighted sum of its parts (a part of weight 0 is "
            "shown, not weighed).", "",
            "| part | weight | score | meaning |", "|---|---:|---:|---|"]
    total = 0.0
    for name in PART_MEANING:
        weight = WEIGHTS.get(name, 0.0)
        score = parts.get(name)
        if score is not None:
            total += weight * score
        out.append(f"| {name} | {weight:.2f} | {_fixed(score, 2)} | {PART_MEANING[name]} |")
    out.append("")
    if confidence is not None and abs(total - confidence) > 0.005:
        why = "; ".join((row.get("evidence") or {}).get("confidence_notes") or [])
        out += [f"The weighted sum is {total:.2f}; the audit set it to {confidence:.2f}"
                + (f": {why}." if why else " (a verdict within noise is capped below the pull-request bar)."), ""]
    return out


def _similar(row: dict) -> list[str]:
    similar = (row.get("evidence") or {}).get("similar_optimizations") or []
    out = ["**Similar past optimizations**", ""]
    if not similar:
        return out + ["None in the OptimizationLog yet: this is the first optimization of its kind.", ""]
    out += ["| similarity | index | measured gain | realized gain | confidence | applied |",
            "|---:|---|---:|---:|---:|---|"]
    for s in similar:
        realized = s.get("realized_gain")
        out.append(f"| {_fixed(s.get('similarity'), 2)} | `{_cell(s.get('ddl'))}` | {_pct(s.get('performance_gain'))} "
                   f"| {_pct(realized) if realized is not None else 'not measured yet'} "
                   f"| {_fixed(s.get('confidence'), 2)} | {_cell(_date(s.get('applied_at'))) or 'not applied'} |")
    return out + [""]


def _index_cost(change: Change, table_writes: dict[str, dict]) -> list[str]:
    ix = change.index
    ev = (change.rows[0].get("evidence") or {}) if change.rows else {}
    out = ["**What the index costs**", ""]
    size = ev.get("index_bytes")
    build = ev.get("build_ms")
    out.append(f"- Size: {_bytes(size)}" + (f", built in {_ms(build)} on the sandbox (a concurrent build "
                                              "takes longer but does not block writes)." if build else "."))
    per_row = ev.get("write_ms_per_row")
    if per_row is not None:
        out.append(f"- Write overhead, measured: {per_row * 1000:.2f} µs more per inserted row.")
    if ev.get("write_cost_ms_per_s") is not None and ev.get("read_benefit_ms_per_s") is not None:
        out.append(f"- At the table's write rate: {ev['write_cost_ms_per_s']:.4f} ms of upkeep per second, "
                   f"against {ev['read_benefit_ms_per_s']:.4f} ms per second saved on reads.")
    writes = table_writes.get(ix.qualified_table)
    if writes:
        non_hot = max(0, int(writes.get("n_tup_upd") or 0) - int(writes.get("n_tup_hot_upd") or 0))
        entries = int(writes.get("n_tup_ins") or 0) + non_hot
        hours = (writes.get("seconds") or 0) / 3600
        line = (f"- Write estimate: every insert and every non-HOT update adds an entry to this index; the "
                f"table saw {_int(writes.get('n_tup_ins'))} inserts, {_int(writes.get('n_tup_upd'))} updates "
                f"({_int(writes.get('n_tup_hot_upd'))} HOT) and {_int(writes.get('n_tup_del'))} deletes")
        line += f" in the last {hours:,.1f} h" if hours else ""
        line += (f": about {_int(entries)} index entries to write. The table has {_int(writes.get('indexes'))} "
                 f"indexes; this makes {_int((writes.get('indexes') or 0) + 1)}.")
        out.append(line)
        if ev.get("write_notes"):
            out += [f"- It ends HOT updates: it {note}; the upkeep above counts them." for note in ev["write_notes"]]
        elif writes.get("n_tup_hot_upd"):
            out.append("- An update that changes an indexed column cannot be HOT: some of today's HOT updates "
                       "may become regular ones.")
    if per_row is None and not writes:
        out.append("- Write overhead: not measured; every insert, delete and non-HOT update of "
                   f"`{ix.qualified_table}` will also maintain this index.")
    return out + [""]


def _migration_files(change: Change) -> list[str]:
    out = ["**Migration**", ""]
    for f in change.files:
        role = "reverts it" if _is_down(f) else "creates the index"
        out.append(f"- `{f.path}`: {role}")
    out += ["", "Both statements are CONCURRENTLY and must run outside a transaction (see the comments in "
            "the files); `IF NOT EXISTS` / `IF EXISTS` make them safe to re-run.", ""]
    return out


def _footer(changes: Sequence[Change]) -> list[str]:
    ids = [str(r["id"]) for c in changes for r in c.rows if r.get("id")]
    target = next((r.get("target") for c in changes for r in c.rows if r.get("target")), None)
    return ["---", f"Opened by dbarch from the OptimizationLog ({'target `' + target + '`, ' if target else ''}"
            f"row{'s' if len(ids) > 1 else ''} {', '.join('`' + i + '`' for i in ids)}). "
            "Later audits update this pull request in place; closing it without merging stops them, "
            "unless the evidence changes materially."]


def _is_down(f: MigrationFile) -> bool:
    return f.path.endswith(("down.sql", ".down.sql"))


# -- plans -------------------------------------------------------------------------------------------

def plan_text(plan: dict, depth: int = 0) -> str:
    """A compact plan as an indented tree, the way EXPLAIN prints it.

    >>> print(plan_text({"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 10.5, "Plan Rows": 3}))
    Seq Scan on t  (cost=10.50 rows=3)
    """
    node = plan.get("Node Type", "?")
    if plan.get("Index Name"):
        node += f" using {plan['Index Name']}"
    if plan.get("Relation Name"):
        node += f" on {plan['Relation Name']}"
    stats = []
    if plan.get("Total Cost") is not None:
        stats.append(f"cost={float(plan['Total Cost']):.2f}")
    if plan.get("Plan Rows") is not None:
        stats.append(f"rows={int(plan['Plan Rows'])}")
    if plan.get("Actual Rows") is not None:
        stats.append(f"actual rows={int(float(plan['Actual Rows']))}")
    # EXPLAIN's layout: a child's arrow 4 columns left of its node, details 2 columns right of it
    pad = " " * (6 * depth - 4) + "->  " if depth else ""
    lines = [f"{pad}{node}  ({' '.join(stats)})" if stats else f"{pad}{node}"]
    detail_pad = " " * (6 * depth + 2)
    for key in ("Join Type", "Index Cond", "Filter", "Sort Key"):
        if plan.get(key):
            value = ", ".join(plan[key]) if isinstance(plan[key], list) else plan[key]
            lines.append(f"{detail_pad}{key}: {value}")
    for child in plan.get("Plans") or []:
        if child:
            lines.append(plan_text(child, depth + 1))
    return "\n".join(lines)


# -- formatting --------------------------------------------------------------------------------------

def _details(summary: str, inner: str) -> list[str]:
    return [f"<details><summary>{summary}</summary>", "", inner, "", "</details>", ""]


def _fenced(text: str, lang: str) -> str:
    # a fence longer than any backtick run inside, so the text cannot end it
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "\n… (plan truncated)"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    text = _cell(json.dumps(value) if isinstance(value, (dict, list)) else value)
    text = text if len(text) <= 60 else text[:59] + "…"
    return f"`{text.replace('`', '')}`" if text else "`NULL`"


def _at(items: Sequence | None, n: int) -> Any:
    return items[n] if items and n < len(items) else None


def _median(values: Iterable[float] | None) -> float | None:
    vals = sorted(v for v in (values or []) if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _round(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _ms(value: Any) -> str:
    if value is None:
        return "n/a"
    v = float(value)
    if v >= 1000:
        return f"{v:,.0f} ms"
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):,.1f}"


def _int(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f}%"


def _fixed(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _blocks(values: Sequence | None) -> str:
    vals = [v for v in (values or []) if v is not None]
    return f"{_median(vals):,.0f}" if vals else "n/a"


def _names(values: Iterable[str] | None) -> str:
    names = sorted(values or [])
    return ", ".join(f"`{n}`" for n in names) if names else "none"


def _bytes(value: Any) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"


def _date(value: Any) -> str:
    if value is None:
        return ""
    return str(value)[:10]
