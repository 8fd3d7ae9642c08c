"""The audit's results as data (for --json) and as a readable report (for people)."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import psycopg

from . import audit
from .memory import store


def audit_result(store_conn: psycopg.Connection, *, target: str, settings: audit.AuditSettings,
                 partition_key: str | None = None) -> dict[str, Any]:
    """Everything an audit of `target` found (the partition's, else the latest), in the CLI's JSON
    contract."""
    snap = store.latest_snapshot(store_conn, target, partition_key)
    if snap is None:
        return {"target": target, "slow_queries": 0, "recommendations": [], "queries": [],
                "indexes": [], "declined": [], "drop_recommendations": [],
                "next_in_line": [], "unmeasured": [], "unmeasured_count": 0, "skipped_candidates": []}
    sid = snap["snapshot_id"]
    queries = store.snapshot_queries(store_conn, sid)
    benches = store.benchmarks(store_conn, sid)
    cands = store.candidates(store_conn, sid)
    selection = audit.select_for_snapshot(store_conn, snap, settings, queries=queries, benchmarks=benches)
    rewrites = audit.rewrite_choices(selection, benches, settings.min_gain_pct)
    recommendations = []
    per_query = []
    for q in queries:
        b = selection.assignment.get(q.queryid)
        own = [c for c in cands if c["queryid"] == q.queryid]
        entry = {"queryid": q.queryid, "query": q.query_text, "fingerprint": q.fingerprint,
                 "calls": q.calls, "mean_exec_ms": round(q.mean_exec_ms, 3),
                 "total_exec_ms": round(q.total_exec_ms, 1), "rows": q.rows, "candidates": len(own),
                 "recommendation": None}
        if b is not None:
            for ddl, choice in audit.recommended_indexes(selection, b):
                rec = {"query": q.query_text, "queryid": q.queryid, "kind": "index", "ddl": ddl,
                       "estimated_gain_pct": b["estimated_gain_pct"], "measured_gain_pct": b["measured_gain_pct"],
                       "confidence": audit.adjusted_confidence(b, choice, q.mean_exec_ms, settings.min_gain_pct),
                       "ms_before": b["ms_before"],
                       "ms_after": b["ms_after"], "shared": bool(b["evidence"].get("cross_statement")),
                       "evidence": b["evidence"]}
                recommendations.append(rec)
            entry["recommendation"] = ";\n".join(audit.members_of(b))
        if q.queryid in rewrites:
            r = rewrites[q.queryid]
            recommendations.append({
                "query": q.query_text, "queryid": q.queryid, "kind": "rewrite", "ddl": r["ddl"],
                "estimated_gain_pct": r["estimated_gain_pct"], "measured_gain_pct": r["measured_gain_pct"],
                "confidence": audit.adjusted_confidence(r, None, q.mean_exec_ms, settings.min_gain_pct),
                "ms_before": r["ms_before"], "ms_after": r["ms_after"], "shared": False, "evidence": r["evidence"]})
            entry["rewrite"] = r["ddl"]
        if b is None and q.queryid not in rewrites:
            tried = [x for x in benches if x["queryid"] == q.queryid]
            waiting = {c.ddl: c.rank for c in selection.next_in_line}
            entry["why_none"] = _why_none(len(own), tried, settings.min_gain_pct, selection.declined, waiting)
            reason = next((t["evidence"]["why"] for t in tried if t["status"] == "unmeasured"), None)
            if reason:
                entry["unmeasured"] = reason
        per_query.append(entry)
    recommendations.sort(key=lambda r: -(r["measured_gain_pct"] or 0))
    return {
        "target": target, "snapshot_id": sid, "captured_at": snap["captured_at"].isoformat(),
        "partition": snap.get("partition_key"),
        "window": [snap["window_start"].isoformat(), snap["window_end"].isoformat()]
        if snap.get("window_start") else None,
        "notes": (snap.get("history") or {}).get("notes", []),
        "stats_reset": snap["stats_reset"].isoformat() if snap["stats_reset"] else None,
        "slow_queries": len(queries), "recommendations": recommendations, "queries": per_query,
        "indexes": [{"ddl": c.ddl, "table": c.table, "index_bytes": c.index_bytes,
                     "serves_queryids": sorted(q for q, v in c.savings.items() if v > 0),
                     "read_benefit_ms_per_s": round(c.read_benefit_ms_per_s, 6),
                     "write_cost_ms_per_s": round(c.write_cost_ms_per_s, 6),
                     **({"previous_verdict": c.previous_verdict} if c.previous_verdict else {})}
                    for c in selection.chosen],
        # the previous audit's verdicts: held within noise, released (moved beyond it), kept only by them
        "previous_verdicts": selection.stability or None,
        "declined": [{"ddl": ddl, "reason": why} for ddl, why in selection.declined.items()],
        "next_in_line": audit.next_in_line(selection),
        "unmeasured": audit.unmeasured(benches), "unmeasured_count": len(audit.unmeasured(benches)),
        "skipped_candidates": [{"queryid": b["queryid"], "ddl": b["ddl"], "reason": b["evidence"].get("why")}
                               for b in benches if b["status"] == "skipped"],
        "drop_recommendations": [{**d, "kind": "drop", "drop_kind": d["kind"]}
                                 for d in store.drop_recommendations(store_conn, sid)],
    }


def _why_none(n_candidates: int, tried: list[dict], min_gain_pct: float, declined: dict[str, str],
              next_in_line: dict[str, int] | None = None) -> str:
    left = next((t for t in tried if t["status"] == "unmeasured"), None)
    if left is not None:
        # a statement with no candidate says why in its own words (a constant only the log keeps, ...)
        why = left["evidence"]["why"]
        return why if left["evidence"].get("no_candidate") else f"not measured: {why}"
    if n_candidates == 0:
        return "no candidate index (already indexed, table too small, or nothing an index can serve)"
    reasons = {declined[t["ddl"]] for t in tried if t["ddl"] in declined and t["status"] == "measured"
               and (t["measured_gain_pct"] or 0) >= min_gain_pct}
    if reasons:
        return "declined: " + "; ".join(sorted(reasons))
    measured = [t for t in tried if t["status"] == "measured"]
    if not measured:
        failed = [t for t in tried if t["status"] == "failed"]
        if failed:
            return f"benchmark failed: {failed[0]['evidence'].get('error')}"
        return "not benchmarked (statement not safe to execute, or skipped)"
    waiting = sorted((next_in_line or {}).get(t["ddl"], 1 << 30) for t in measured
                     if t["ddl"] in (next_in_line or {}) and (t["measured_gain_pct"] or 0) >= min_gain_pct)
    if waiting:
        return f"proven, but beyond the configured number of indexes: next in line (#{waiting[0]})"
    top = max(measured, key=lambda t: t["measured_gain_pct"] if t["measured_gain_pct"] is not None else -1e9)
    gain = top["measured_gain_pct"]
    if gain is None:
        return "candidates could only be costed, and the planner saw no gain"
    if not any(t["evidence"].get("index_used") for t in measured):
        return "no candidate was used by the planner"
    if gain < min_gain_pct:
        return f"best candidate gained {gain:.1f}% (< {min_gain_pct:.0f}% bar)"
    return (f"best candidate gained {gain:.1f}% but was not chosen: another index already serves the "
            "statement's table, or the verdict was within noise")


def format_report(result: dict[str, Any], width: int = 100) -> str:
    lines = [f"dbarch audit of {result['target']}: {result['slow_queries']} slow statement(s), "
             f"{len(result['recommendations'])} recommendation(s)"]
    if result.get("window"):
        lines.append(f"week {result['window'][0][:10]} to {result['window'][1][:10]}")
    for note in result.get("notes") or []:
        lines.append(f"({note})")
    lines.append("")
    recs: dict[int, list[dict]] = {}
    for r in result["recommendations"]:
        recs.setdefault(r["queryid"], []).append(r)
    for i, q in enumerate(result["queries"], 1):
        query = " ".join(q["query"].split())
        lines.append(f"{i}. {textwrap.shorten(query, width - 4, placeholder=' …')}")
        lines.append(f"   calls {q['calls']:,}  mean {q['mean_exec_ms']:.2f} ms  total {q['total_exec_ms']:,.0f} ms")
        for rec in recs.get(q["queryid"], []):
            lines.append(f"   -> {rec['ddl']}" if rec["kind"] == "index" else
                         f"   -> rewrite (same rows, proven): {' '.join(rec['ddl'].split())[:width]}")
            if rec.get("shared"):
                lines.append("      (chosen for another statement; it serves this one too)")
            before, after = rec["ms_before"], rec["ms_after"]
            timing = (f"{before:.3f} ms -> {after:.3f} ms" if before is not None and after is not None
                      else "not timed (planner cost only)")
            size = rec["evidence"].get("index_bytes")
            lines.append(f"      measured {timing}  gain {rec['measured_gain_pct'] or 0:.1f}%  "
                         f"(planner {rec['estimated_gain_pct'] or 0:.1f}%)  confidence {rec['confidence']:.2f}"
                         + (f"  index {size / 1_048_576:.1f} MB" if size else ""))
            stood = rec["evidence"].get("anchored")
            if stood:   # the previous audit's measurement stands: this one agreed with it within noise
                lines.append(f"      as the previous audit measured it (this audit: {stood['now']['gain']}%, within noise)")
            sources = (rec["evidence"].get("parameter_values") or {}).get("source_counts")
            if sources:   # where the values came from, never the values (they can be personal data)
                lines.append("      parameter values: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())))
            constants = (rec["evidence"].get("parameter_values") or {}).get("constants")
            if constants:   # which $n pg_stat_statements had made of the application's constants, and whence
                lines.append(f"      constants {', '.join(constants['params'])} given back from the {constants['source']}")
        if not recs.get(q["queryid"]):
            lines.append(f"   -> no recommendation: {q.get('why_none', '')}")
        lines.append("")
    if result.get("indexes"):
        total = sum(i["index_bytes"] for i in result["indexes"]) / 1_048_576
        lines.append(f"{len(result['indexes'])} index(es) recommended for the workload, {total:.1f} MB in all")
        for i in result["indexes"]:
            if (i.get("previous_verdict") or "").startswith("kept"):
                lines.append(f"  {i['ddl']}: {i['previous_verdict']}")
    for d in result.get("declined", []):
        lines.append(f"  declined {d['ddl']}: {d['reason']}")
    for n in result.get("next_in_line") or []:
        lines.append(f"  next in line #{n['rank']} (beyond the index cap): {n['ddl']}  gain "
                     f"{n['measured_gain_pct'] or 0:.1f}%  confidence {n['confidence'] or 0:.2f}  "
                     f"serves {len(n['serves_queryids'])} statement(s)")
    skipped = result.get("skipped_candidates") or []
    if skipped:
        lines.append(f"  {len(skipped)} candidate experiment(s) not run: {skipped[0]['reason']}")
    if result.get("unmeasured_count"):
        lines.append(f"  {result['unmeasured_count']} slow statement(s) not measured (reasons above)")
    drops = result.get("drop_recommendations") or []
    if drops:
        lines.append("")
        lines.append("Existing indexes you could drop (never applied by dbarch):")
        for d in drops:
            lines.append(f"  {d['ddl']}  -- {d['drop_kind']}, {d['size_bytes'] / 1_048_576:.1f} MB: {d['reason']}")
    return "\n".join(lines)


# -- the week at a glance: tables and the markdown report -------------------------------------------

_CLAUSES = re.compile(r"\s(?=(?:FROM|WHERE|GROUP BY|ORDER BY|HAVING|LIMIT|OFFSET|JOIN|LEFT JOIN|INNER JOIN|"
                      r"RIGHT JOIN|UNION|RETURNING|VALUES|SET|AND|OR)\b)", re.IGNORECASE)

APP_VS_MEASURED = (
    "*app mean* is what the application's calls took on average this week (pg_stat_statements, every "
    "parameter value, warm or cold cache); *measured* is the median of timed runs on the sandbox with "
    "sampled values, among them the column's most common value as the worst case. They differ when the "
    "sample is heavier or lighter than the application's usual values, or the caches differ; the gain "
    "compares measured with measured.")


def clip(text: str, width: int = 120) -> str:
    """The statement on one line, cut (when too long) before a clause or condition, never inside one.

    >>> clip("SELECT a FROM t WHERE x = $1 AND y = $2 ORDER BY a", 40)
    'SELECT a FROM t WHERE x = $1 …'
    """
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cuts = [m.start() for m in _CLAUSES.finditer(flat) if m.start() <= width - 2]
    cut = cuts[-1] if cuts else flat.rfind(" ", 0, width - 2)
    return flat[: cut if cut > 0 else width - 2].rstrip() + " …"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def slow_statement_rows(result: dict[str, Any]) -> list[dict]:
    """One row per slow statement: what the application spent on it this week."""
    return [{"statement": clip(q["query"], 200), "calls": int(q["calls"]), "total_ms": round(q["total_exec_ms"], 1),
             "mean_ms": _ms(q["mean_exec_ms"]),
             "rows_per_call": round(q["rows"] / q["calls"], 1) if q.get("rows") is not None and q["calls"] else None,
             "recommendation": q.get("recommendation") or q.get("rewrite") or (q.get("why_none") or "")[:80]}
            for q in result["queries"]]


def _index_label(ddl: str) -> str:
    from .watch import parse_index_ddl

    ix = parse_index_ddl(ddl)
    return f"{ix.name} on {ix.table}" if ix else clip(ddl, 60)


def benchmark_rows(benches: list[dict], queries: dict[int, str]) -> list[dict]:
    """Candidates × statements, before and after, regressions named."""
    out = []
    for b in sorted(benches, key=lambda b: (b["ddl"], b["queryid"])):
        ev = b["evidence"] or {}
        out.append({"index": _index_label(b["ddl"]), "statement": clip(queries.get(b["queryid"], "?"), 120),
                    "status": b["status"], "before_ms": _ms(b["ms_before"]), "after_ms": _ms(b["ms_after"]),
                    "gain_pct": None if b["measured_gain_pct"] is None else round(b["measured_gain_pct"], 1),
                    "planner_gain_pct": None if b["estimated_gain_pct"] is None else round(b["estimated_gain_pct"], 1),
                    "regression": bool(ev.get("regression")), "own_statement": not ev.get("cross_statement")})
    return out


def regressions(rows: list[dict]) -> list[str]:
    return [f"{r['index']} slows `{r['statement']}` ({r['before_ms']} -> {r['after_ms']} ms)"
            for r in rows if r["regression"]]


def index_rows(result: dict[str, Any], benches: list[dict], log_rows: list[dict]) -> list[dict]:
    """Chosen, declined and drop indexes, with size, upkeep and pull request."""
    sizes = {b["ddl"]: (b["evidence"] or {}).get("index_bytes") for b in benches}
    prs = {r["ddl"]: r.get("pr_url") for r in log_rows if r.get("pr_url")}
    out = [{"decision": "chosen", "index": _index_label(i["ddl"]), "size_mb": _mb(i["index_bytes"]),
            "upkeep_ms_per_s": round(i["write_cost_ms_per_s"], 4),
            "saves_ms_per_s": round(i["read_benefit_ms_per_s"], 4),
            "statements": len(i["serves_queryids"]), "why": "", "pull_request": prs.get(i["ddl"]) or ""}
           for i in result.get("indexes", [])]
    out += [{"decision": "declined", "index": _index_label(d["ddl"]), "size_mb": _mb(sizes.get(d["ddl"])),
             "upkeep_ms_per_s": None, "saves_ms_per_s": None, "statements": None, "why": d["reason"],
             "pull_request": ""} for d in result.get("declined", [])]
    out += [{"decision": "drop", "index": d.get("index_name") or clip(d["ddl"], 60),
             "size_mb": _mb(d.get("size_bytes")), "upkeep_ms_per_s": None, "saves_ms_per_s": None,
             "statements": None, "why": f"{d['drop_kind']}: {d['reason']}", "pull_request": ""}
            for d in result.get("drop_recommendations", [])]
    return out


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1_048_576, 2)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|")


def week_markdown(result: dict[str, Any], *, benchmarks: list[dict] | None = None,
                  indexes: list[dict] | None = None, run_url: str | None = None) -> str:
    """The week in markdown, for the top of the week's materialization and `dbarch report`."""
    week = (result.get("window") or [result.get("captured_at") or ""])[0][:10]
    lines = [f"## dbarch audit of `{result['target']}`, week of {week}", ""]
    recs = {}
    for r in result["recommendations"]:
        recs.setdefault(r["queryid"], r)
    lines.append(f"**{result['slow_queries']} slow statement(s), {len(result['recommendations'])} "
                 f"recommendation(s), {len(result.get('indexes') or [])} index(es) chosen"
                 + (f", {sum(i['index_bytes'] for i in result['indexes']) / 1_048_576:.1f} MB**"
                    if result.get("indexes") else "**"))
    lines += [""] + [f"- {n}" for n in result.get("notes") or []]
    if run_url:
        lines += ["", f"Run: {run_url}"]
    lines += ["", "| # | statement | calls | app mean ms | recommendation | measured before → after ms | gain | "
              "confidence |", "|---|---|---|---|---|---|---|---|"]
    for i, q in enumerate(result["queries"], 1):
        r = recs.get(q["queryid"])
        text = _cell(clip(q["query"], 110))
        if r:
            timing = (f"{r['ms_before']:.3f} → {r['ms_after']:.3f}" if r["ms_before"] is not None
                      and r["ms_after"] is not None else "planner only")
            what = f"`{_index_label(r['ddl'])}`" + (" (shared)" if r.get("shared") else "") \
                if r["kind"] == "index" else "rewrite"
            lines.append(f"| {i} | `{text}` | {q['calls']:,} | {q['mean_exec_ms']:.2f} | {what} | {timing} | "
                         f"{r['measured_gain_pct'] or 0:.1f}% | {r['confidence']:.2f} |")
        else:
            lines.append(f"| {i} | `{text}` | {q['calls']:,} | {q['mean_exec_ms']:.2f} | none: "
                         f"{_cell(q.get('why_none', ''))} | | | |")
    lines += ["", APP_VS_MEASURED]
    if indexes:
        lines += ["", "**Indexes**", "", "| decision | index | size MB | upkeep ms/s | saves ms/s | why | pull request |",
                  "|---|---|---|---|---|---|---|"]
        for x in indexes:
            lines.append(f"| {x['decision']} | `{_cell(x['index'])}` | {_cell(x['size_mb'])} | "
                         f"{_cell(x['upkeep_ms_per_s'])} | {_cell(x['saves_ms_per_s'])} | {_cell(x['why'])} | "
                         f"{_cell(x['pull_request'])} |")
    named = regressions(benchmarks or [])
    if named:
        lines += ["", "**Regressions measured** (an index that would slow another statement is never chosen)", ""]
        lines += [f"- {r}" for r in named]
    return "\n".join(lines)
