"""Explain a query in plain language, with its plan.

The statement must pass the same read-only validation as `ask`; then `EXPLAIN (FORMAT JSON)` (never
ANALYZE: nothing is executed), with GENERIC_PLAN when it has `$n`, inside a READ ONLY transaction.
The summary of the plan is deterministic (node types, relations, estimated rows, indexes used, what
reads whole tables); with Gemini, a plain-language explanation is added from the SQL, the plan and
the definitions of the tables it reads.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import psycopg
from psycopg import sql

from ..bench.measure import compact_plan
from ..db import tag
from ..errors import DbarchError
from ..llm.gemini import GeminiClient
from ..llm.prompts import EXPLAIN_PROMPT, EXPLAIN_SCHEMA, EXPLAIN_SYSTEM, NONE
from ..llm.validate import Rejection, read_only, validate_read_only_select
from ..safety import allowlist
from .answer import AskSettings
from .corpus import table_documents

SCANS_WHOLE = ("Seq Scan", "Parallel Seq Scan")


def explain_sql(text: str, *, conn: psycopg.Connection, client: GeminiClient | None = None,
                settings: AskSettings = AskSettings()) -> dict[str, Any]:
    checked = validate_read_only_select(text, settings.schemas, allow_params=True)
    if not isinstance(checked, Rejection):
        # planning folds immutable functions: a database's own function could run at EXPLAIN time,
        # so the allow-list (resolved by PostgreSQL) applies to what is only planned too
        verdict = allowlist.check_statement(conn, checked.sql, allowed_schemas=settings.schemas,
                                            search_path=settings.schemas, allowed_functions=settings.allowed_functions)
        if not verdict.ok:
            checked = Rejection(checked.sql, verdict.reason)
    if isinstance(checked, Rejection):
        raise DbarchError(f"refused to explain this statement: {checked.reason}",
                          "explain-sql explains one read-only SELECT over the allowed schemas (--schemas)")
    plan = plan_of(conn, checked.sql, has_params=bool(checked.params), settings=settings)
    result: dict[str, Any] = {"sql": checked.sql, "summary": summarize_plan(plan), "plan": compact_plan(plan),
                              "explanation": None, "concerns": [], "source": "plan", "usage": {}}
    if client is not None:
        names = {t.split(".")[-1] for t in checked.tables}
        tables = [d.content for d in table_documents(conn, settings.schemas) if d.metadata["table"] in names]
        prompt = EXPLAIN_PROMPT.format(sql=checked.sql, plan=json.dumps(result["plan"], indent=1),
                                       summary="\n".join(result["summary"]),
                                       tables="\n\n".join(tables) or NONE)
        reply, usage = client.generate_json(prompt, EXPLAIN_SCHEMA, system=EXPLAIN_SYSTEM)
        result.update(explanation=str(reply.get("explanation") or "").strip(),
                      concerns=[str(c) for c in reply.get("concerns") or []], source="gemini", usage=usage)
    return result


def plan_of(conn: psycopg.Connection, text: str, *, has_params: bool, settings: AskSettings) -> dict:
    options = "FORMAT JSON, GENERIC_PLAN" if has_params else "FORMAT JSON"
    # options are fixed strings; `text` passed validate_read_only_select, so it is composed as SQL
    query = sql.SQL(tag("EXPLAIN ({}) ")).format(sql.SQL(options)) + sql.SQL(text)
    try:
        with read_only(conn, statement_timeout_ms=settings.statement_timeout_ms, role=settings.read_only_role,
                       search_path=settings.schemas, generated=True,
                       accept_superuser_risk=settings.accept_superuser_risk):
            # without $n the extended protocol is used, which accepts one statement only; with $n
            # the simple protocol is needed for GENERIC_PLAN, and the READ ONLY transaction remains
            doc = conn.execute(query, prepare=not has_params).fetchone()[0]
    except psycopg.Error as exc:
        message = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        raise DbarchError(f"PostgreSQL cannot plan this statement: {message}",
                          "check the table and column names against the target (and --schemas)") from None
    return doc[0] if isinstance(doc, list) else doc


def _walk(node: dict, depth: int = 0) -> Iterator[tuple[dict, int]]:
    yield node, depth
    for child in node.get("Plans") or []:
        yield from _walk(child, depth + 1)


def describe_node(node: dict) -> str:
    kind = node["Node Type"]
    parts = [kind]
    if node.get("Strategy") and kind == "Aggregate":
        parts = [f"{node['Strategy'].capitalize()} aggregate"]
    if node.get("Join Type") and ("Join" in kind or kind == "Nested Loop"):
        parts.append(f"({node.get('Join Type', '').lower()})")
    if node.get("Index Name"):
        parts.append(f"using {node['Index Name']}")
    if node.get("Relation Name"):
        alias = node.get("Alias")
        parts.append(f"on {node['Relation Name']}" + (f" {alias}" if alias and alias != node["Relation Name"] else ""))
    text = " ".join(parts) + f", about {int(node.get('Plan Rows', 0)):,} rows"
    for key, label in (("Index Cond", "condition"), ("Recheck Cond", "condition"), ("Hash Cond", "on"),
                       ("Join Filter", "join filter"), ("Filter", "filter")):
        if node.get(key):
            text += f"; {label} {node[key]}"
            break
    if node.get("Sort Key"):
        text += f"; by {', '.join(node['Sort Key'])}"
    if node.get("Group Key"):
        text += f"; grouped by {', '.join(node['Group Key'])}"
    return text


def summarize_plan(doc: dict) -> list[str]:
    """Plain sentences about the plan, then its outline (one line per node, indented)."""
    root = doc["Plan"]
    nodes = list(_walk(root))
    whole = sorted({n["Relation Name"] for n, _ in nodes if n["Node Type"] in SCANS_WHOLE and n.get("Relation Name")})
    indexes = sorted({n["Index Name"] for n, _ in nodes if n.get("Index Name")})
    lines = [f"PostgreSQL estimates about {int(root.get('Plan Rows', 0)):,} rows at a total cost of "
             f"{float(root.get('Total Cost', 0.0)):,.1f} (planner units, not milliseconds)."]
    if indexes:
        lines.append(f"It uses the index{'es' if len(indexes) > 1 else ''} {', '.join(indexes)}.")
    else:
        lines.append("It uses no index.")
    if whole:
        lines.append(f"It reads every row of {', '.join(whole)} (sequential scan).")
    if any(n["Node Type"] in ("Sort", "Incremental Sort") for n, _ in nodes):
        lines.append("It sorts rows before returning them.")
    lines.append("Plan:")
    lines += ["  " + "  " * depth + describe_node(node) for node, depth in nodes]
    return lines
