"""Gemini's second opinion on one slow query, never trusted blindly.

The prompt carries the query, its plan, the definitions and statistics of the tables it reads, the
deterministic advisor's candidates and the similar past optimizations with their measured gains
(RAG). Each idea in the reply is validated before anything runs:
- an index must be one CREATE INDEX on existing tables and columns; it becomes an IndexCandidate, so
  the benchmark builds its own DDL and measures it exactly like the advisor's candidates;
- a rewrite must be one read-only SELECT with the same `$n`; `verify_rewrites` then proves on the
  sandbox that it returns the same rows before it may be timed.
Everything refused is kept with its reason, for the evidence.

Confidence never comes from the model's words (its rationale is kept, never scored): it comes from
the benchmark, and rises a little only when Gemini and the advisor proposed the same index *and* the
clock confirmed the gain (`combined_confidence`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import psycopg

from ..advisor.analyze import UnparseableQuery, analyze
from ..advisor.catalog import Catalog
from ..models import IndexCandidate
from ..safety import check_statement
from .gemini import GeminiAuthError, GeminiClient, GeminiError
from .prompts import NONE, RECOMMEND_PROMPT, RECOMMEND_SCHEMA, RECOMMEND_SYSTEM
from .validate import Rejection, validate_index, validate_read_only_select, validate_rewrite

MAX_IDEAS = 3
AGREEMENT_BONUS = 0.1     # share of the remaining distance to 1.0 gained when both agree and the clock confirms


def gemini_ideas(client: GeminiClient | None, *, query: str, plan: Any, tables: Sequence[str],
                 candidates: Sequence[str], similar: Sequence[dict], conn: psycopg.Connection,
                 advisor_candidates: Sequence[IndexCandidate] = (), max_ideas: int = MAX_IDEAS) -> dict:
    """Ask Gemini for ideas on `query` and validate them against the catalog on `conn`.

    tables: table definitions and statistics as text (see `table_context`); candidates: the
    advisor's candidates as text (DDL or labels); similar: past optimizations (query_text, ddl,
    performance_gain, confidence, similarity). Returns accepted_indexes (IndexCandidate),
    accepted_rewrites (SQL to prove with `verify_rewrites`), rejected ({kind, sql, reason}),
    agrees_with_advisor (labels), rationales, usage, and error (a transient Gemini problem; the
    audit carries on without the second opinion). A refused API key raises GeminiAuthError.
    """
    result: dict[str, Any] = {"accepted_indexes": [], "accepted_rewrites": [], "rejected": [],
                              "agrees_with_advisor": [], "rationales": {}, "ideas": 0, "usage": {},
                              "error": None}
    if client is None:
        result["error"] = "Gemini is off (no API key)"
        return result
    prompt = RECOMMEND_PROMPT.format(
        query=query.strip(), plan=_plan_text(plan), tables="\n\n".join(tables) or NONE,
        candidates="\n".join(f"- {c}" for c in candidates) or NONE, similar=_similar_text(similar))
    try:
        reply, usage = client.generate_json(prompt, RECOMMEND_SCHEMA,
                                            system=RECOMMEND_SYSTEM.format(max_ideas=max_ideas))
    except GeminiAuthError:
        raise
    except GeminiError as exc:
        result["error"] = exc.problem
        return result
    result["usage"] = usage
    ideas = reply.get("recommendations")
    if not isinstance(ideas, list):
        result["error"] = "Gemini's reply has no list of recommendations"
        return result
    result["ideas"] = len(ideas)

    original = validate_read_only_select(query, None, allow_params=True)
    catalog = Catalog(conn)
    seen: set[str] = set()
    for n, idea in enumerate(ideas):
        if not isinstance(idea, dict):
            result["rejected"].append({"kind": "", "sql": json.dumps(idea, default=str), "reason": "not an object"})
            continue
        kind, text = str(idea.get("kind") or ""), str(idea.get("sql") or "").strip()
        rationale = str(idea.get("rationale") or "").strip()
        if n >= max_ideas:
            result["rejected"].append({"kind": kind, "sql": text, "reason": f"beyond the {max_ideas} ideas asked for"})
            continue
        if kind == "index":
            checked = validate_index(text, conn, catalog=catalog, reason="suggested by Gemini")
            if isinstance(checked, Rejection):
                result["rejected"].append({"kind": kind, **checked.to_dict()})
                continue
            label = checked.label()
            if label in seen:
                continue
            seen.add(label)
            result["accepted_indexes"].append(checked)
            result["rationales"][label] = rationale
            if any(agrees(checked, c) for c in advisor_candidates) or label in candidates:
                result["agrees_with_advisor"].append(label)
        elif kind == "rewrite":
            checked = validate_read_only_select(text, None, allow_params=True)
            if isinstance(checked, Rejection):
                result["rejected"].append({"kind": kind, **checked.to_dict()})
                continue
            if isinstance(original, Rejection):
                result["rejected"].append({"kind": kind, "sql": text, "reason":
                                           f"the query is not a read-only SELECT ({original.reason}); "
                                           "only SELECTs are rewritten"})
                continue
            verdict = check_statement(conn, checked.sql)   # the allow-list, resolved by PostgreSQL
            if not verdict.ok:
                result["rejected"].append({"kind": kind, "sql": text, "reason": verdict.reason})
                continue
            if checked.params != original.params:
                result["rejected"].append({"kind": kind, "sql": text, "reason":
                                           f"uses parameters {_params(checked.params)} but the query uses "
                                           f"{_params(original.params)}"})
                continue
            if checked.sql not in result["accepted_rewrites"]:
                result["accepted_rewrites"].append(checked.sql)
                result["rationales"][checked.sql] = rationale
        else:
            result["rejected"].append({"kind": kind, "sql": text, "reason": f"unknown kind {kind!r} (index or rewrite)"})
    return result


def verify_rewrites(conn: psycopg.Connection, original: str, rewrites: Sequence[str], *,
                    param_sets: Sequence[Sequence[Any]] | None = None, n_sets: int = 3,
                    statement_timeout_ms: int = 10_000) -> dict[str, list]:
    """Prove each rewrite returns the original's rows on the sandbox (read-only, rolled back).
    param_sets default to values sampled from the data, as the benchmark does."""
    if param_sets is None:
        param_sets = sample_params(conn, original, n_sets=n_sets)
    accepted, rejected = [], []
    for rewrite in rewrites:
        checked = validate_rewrite(original, rewrite, conn, param_sets, statement_timeout_ms=statement_timeout_ms)
        if isinstance(checked, Rejection):
            rejected.append({"kind": "rewrite", **checked.to_dict()})
        else:
            accepted.append(checked.sql)
    return {"accepted": accepted, "rejected": rejected, "param_sets": [list(p) for p in param_sets]}


def sample_params(conn: psycopg.Connection, query: str, *, n_sets: int = 3) -> list[tuple]:
    """Values for the query's `$n`, sampled from the tables (bench.params); [] when they cannot be."""
    from ..bench.params import sample_parameter_sets

    try:
        shape = analyze(query)
    except UnparseableQuery:
        return []
    catalog = Catalog(conn)
    if len(shape.tables) > 1:
        shape = analyze(query, catalog.columns_map(shape.tables, shape.schemas))
    sets, _plan = sample_parameter_sets(conn, shape, catalog, n_sets=n_sets, query=query)
    return [tuple(s) for s in sets]


def agrees(gemini: IndexCandidate, advisor: IndexCandidate) -> bool:
    """The same index in substance: table, method and key columns (reason and INCLUDE aside)."""
    return ((gemini.schema, gemini.table, gemini.method, tuple(gemini.columns))
            == (advisor.schema, advisor.table, advisor.method, tuple(advisor.columns)))


def combined_confidence(measured: float | None, *, gemini_agrees: bool, clock_confirms: bool) -> float:
    """The benchmark's confidence, raised by a tenth of what is left to 1.0 only when Gemini and the
    advisor proposed the same index and the measured gain cleared the bar; the model alone adds nothing.

    >>> combined_confidence(0.8, gemini_agrees=True, clock_confirms=True)
    0.82
    >>> combined_confidence(0.8, gemini_agrees=True, clock_confirms=False)
    0.8
    """
    if measured is None:
        return 0.0
    if gemini_agrees and clock_confirms:
        return round(measured + AGREEMENT_BONUS * (1.0 - measured), 4)
    return measured


def table_context(conn: psycopg.Connection, tables: Sequence[str], schemas: Sequence[str] = ("public",)) -> list[str]:
    """Definitions (as the ask corpus renders them) and column statistics of `tables`, for the prompt."""
    from ..ask.corpus import table_documents

    wanted = {t.split(".")[-1] for t in tables}
    catalog = Catalog(conn)
    out = []
    for doc in table_documents(conn, schemas):
        if doc.metadata["table"] not in wanted:
            continue
        info = catalog.table(doc.metadata["table"], doc.metadata["schema"])
        stats = []
        if info is not None:
            for column in info.columns:
                if column in info.n_distinct:
                    stats.append(f"{column}: ~{info.distinct(column):,.0f} distinct, "
                                 f"{info.null_frac.get(column, 0.0):.0%} null")
        out.append(doc.content + ("\n-- column statistics: " + "; ".join(stats) if stats else ""))
    return out


def _plan_text(plan: Any) -> str:
    if plan is None:
        return NONE
    return plan if isinstance(plan, str) else json.dumps(plan, indent=1, default=str)


def _similar_text(similar: Sequence[dict]) -> str:
    if not similar:
        return NONE
    lines = []
    for s in similar:
        gain = s.get("performance_gain")
        lines.append(f"- {' '.join(str(s.get('query_text', '')).split())[:300]}\n  fix: {s.get('ddl', '')}\n"
                     f"  measured gain: {f'{gain:.1f}%' if gain is not None else 'n/a'}, "
                     f"confidence {s.get('confidence') or 0:.2f}, similarity {s.get('similarity') or 0:.2f}")
    return "\n".join(lines)


def _params(params: Sequence[int]) -> str:
    return ", ".join(f"${p}" for p in params) or "none"
