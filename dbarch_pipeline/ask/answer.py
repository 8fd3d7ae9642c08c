"""Answer a question with one read-only SELECT.

With Gemini: the prompt carries the retrieved tables, documentation and examples; the reply
`{"sql", "explanation"}` is validated (one read-only SELECT over the allowed schemas, see
llm.validate) and run in a READ ONLY transaction with a statement timeout, a row limit and the
allowed schemas as search_path (as a read-only role when one is configured). A refusal or an SQL
error goes back to Gemini with its reason, for at most `max_attempts` replies.

Without Gemini: the closest known question-SQL pair is run the same safe way and labelled as the
answer to *that* question, never to the one asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import psycopg

from ..errors import DbarchError
from ..llm.gemini import API_KEY_ENV, GeminiClient
from ..llm.prompts import ASK_PROMPT, ASK_RETRY, ASK_SCHEMA, ASK_SYSTEM, NONE
from ..llm.validate import Rejection, SafeSelect, fetch_capped_select, read_only, validate_read_only_select
from ..safety import allowlist
from ..safety.walls import Caps
from ..memory.embeddings import Embedder
from .retrieve import RetrievalSettings, Retrieved, retrieve

ANSWERED, KNOWN_PAIR, REFUSED, FAILED, NO_MATCH = "answered", "known_pair", "refused", "failed", "no_match"


@dataclass(frozen=True)
class AskSettings:
    schemas: tuple[str, ...] = ("public",)
    max_rows: int = 100
    statement_timeout_ms: int = 10_000
    max_attempts: int = 3               # Gemini replies per question, the first included
    read_only_role: str | None = None   # None: dbarch_reader when the session is a superuser (safety.roles)
    accept_superuser_risk: bool = False  # run as a superuser when no least-privilege role exists
    allowed_functions: tuple[str, ...] = ()   # non-built-in functions the SQL may call (e.g. similarity)
    max_value_bytes: int = Caps.max_value_bytes   # a longer value is cut
    max_total_bytes: int = Caps.max_total_bytes   # fetching stops beyond this
    known_pair_min_similarity: float = 0.35
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)


@dataclass
class Answer:
    question: str
    status: str                          # answered | known_pair | refused | failed | no_match
    source: str                          # gemini | known_pair | none
    sql: str | None = None
    explanation: str = ""
    label: str = ""                      # what the reader must know about this answer
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    truncated: bool = False
    notes: list[str] = field(default_factory=list)   # what the caps cut
    attempts: list[dict] = field(default_factory=list)   # sql, outcome (ok | refused | error), reason
    tables_in_prompt: list[str] = field(default_factory=list)
    matched_question: str | None = None
    similarity: float | None = None
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (ANSWERED, KNOWN_PAIR)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [list(r) for r in self.rows]
        return data


def answer(question: str, *, target_conn: psycopg.Connection, store_conn: psycopg.Connection,
           embedder: Embedder, client: GeminiClient | None, target: str,
           settings: AskSettings = AskSettings()) -> Answer:
    if not question.strip():
        raise DbarchError("the question is empty", 'ask something, e.g. dbarch ask "How many users signed up this week?"')
    retrieved = retrieve(store_conn, embedder, question, target=target, settings=settings.retrieval)
    if client is None:
        return known_pair_answer(question, retrieved, target_conn, settings)
    if not retrieved.tables:
        raise DbarchError(f"the ask corpus of target {target!r} has no tables",
                          "refresh it (dbarch ask does; or materialize ask_corpus) and check that --schemas "
                          "names the schemas your tables are in")
    return gemini_answer(question, retrieved, target_conn, client, settings)


def build_prompt(question: str, retrieved: Retrieved) -> str:
    return ASK_PROMPT.format(
        question=" ".join(question.split()),
        tables="\n\n".join(t["content"] for t in retrieved.tables) or NONE,
        docs="\n\n---\n\n".join(d["content"] for d in retrieved.docs) or NONE,
        examples="\n\n".join(e["content"] for e in retrieved.examples) or NONE,
    )


def gemini_answer(question: str, retrieved: Retrieved, conn: psycopg.Connection, client: GeminiClient,
                  settings: AskSettings) -> Answer:
    result = Answer(question=question, status=FAILED, source="gemini", tables_in_prompt=retrieved.table_names)
    system = ASK_SYSTEM.format(schemas=", ".join(settings.schemas), max_rows=settings.max_rows)
    base = build_prompt(question, retrieved)
    prompt = base
    usage: dict[str, int] = {}
    for _ in range(max(1, settings.max_attempts)):
        reply, call_usage = client.generate_json(prompt, ASK_SCHEMA, system=system)
        for k, v in call_usage.items():
            usage[k] = usage.get(k, 0) + v
        sql_text = str(reply.get("sql") or "").strip()
        explanation = str(reply.get("explanation") or "").strip()
        try:
            checked = validate(conn, sql_text, settings)
            if isinstance(checked, Rejection):
                result.attempts.append({"sql": sql_text, "outcome": "refused", "reason": checked.reason})
                prompt = base + ASK_RETRY.format(sql=sql_text or "(empty)", error=f"refused: {checked.reason}")
                continue
            columns, rows, truncated, notes = run_select_capped(conn, checked.sql, settings)
        except psycopg.Error as exc:
            error = error_text(exc, settings)
            result.attempts.append({"sql": sql_text, "outcome": "error", "reason": error})
            prompt = base + ASK_RETRY.format(sql=sql_text, error=error)
            continue
        result.attempts.append({"sql": checked.sql, "outcome": "ok", "reason": ""})
        result.status, result.sql, result.explanation = ANSWERED, checked.sql, explanation
        result.columns, result.rows, result.truncated, result.notes = columns, rows, truncated, notes
        result.label = f"answer written by Gemini ({client.model}), checked read-only and run"
        if truncated:
            result.label += f"; only the first {len(rows)} rows are shown"
        for note in notes:
            result.label += f"; {note}"
        break
    else:
        refused = all(a["outcome"] == "refused" for a in result.attempts)
        result.status = REFUSED if refused else FAILED
        last = result.attempts[-1]
        result.label = (f"no answer: Gemini's {len(result.attempts)} replies were "
                        f"{'all refused' if refused else 'refused or failed'}; last: {last['reason']}")
    result.usage = usage
    return result


def known_pair_answer(question: str, retrieved: Retrieved, conn: psycopg.Connection,
                      settings: AskSettings) -> Answer:
    """Without Gemini: the stored answer to the closest known question, labelled as such."""
    off = f"Gemini is off ({API_KEY_ENV} is not set)"
    result = Answer(question=question, status=NO_MATCH, source="none")
    if not retrieved.examples:
        result.label = (f"{off} and no question-SQL pair is known yet: add some with --examples FILE "
                        "(YAML/JSON list of question and sql), or set the key")
        return result
    best = retrieved.examples[0]
    matched, similarity = best["metadata"]["question"], float(best["similarity"])
    result.matched_question, result.similarity = matched, similarity
    if similarity < settings.known_pair_min_similarity:
        result.label = (f"{off} and no known question is close to yours (closest: {matched!r}, "
                        f"similarity {similarity:.2f})")
        return result
    try:
        checked = validate(conn, best["metadata"]["sql"], settings)
    except psycopg.Error as exc:
        checked = Rejection(best["metadata"]["sql"], error_text(exc, settings))
    if isinstance(checked, Rejection):
        result.status, result.label = REFUSED, f"the closest known pair's SQL is refused: {checked.reason}"
        return result
    result.source, result.sql = "known_pair", checked.sql
    result.label = (f"{off}: this is NOT an answer written for your question. It is the stored SQL of the "
                    f"closest known question, {matched!r} (similarity {similarity:.2f}), run read-only")
    try:
        result.columns, result.rows, result.truncated, result.notes = run_select_capped(conn, checked.sql, settings)
    except psycopg.Error as exc:
        result.status = FAILED
        result.attempts.append({"sql": checked.sql, "outcome": "error", "reason": error_text(exc, settings)})
        result.label += f"; it failed: {error_text(exc, settings)}"
        return result
    result.status = KNOWN_PAIR
    result.attempts.append({"sql": checked.sql, "outcome": "ok", "reason": ""})
    return result


def validate(conn: psycopg.Connection, text: str, settings: AskSettings) -> SafeSelect | Rejection:
    """One read-only SELECT over the allowed schemas (sqlglot, for clear early refusals), then the
    allow-list resolved by PostgreSQL: every function, operator, cast, domain and view it would run
    must be known to be safe (safety.allowlist)."""
    checked = validate_read_only_select(text, settings.schemas, allow_params=False)
    if isinstance(checked, Rejection):
        return checked
    verdict = allowlist.check_statement(conn, checked.sql, allowed_schemas=settings.schemas,
                                        search_path=settings.schemas, allowed_functions=settings.allowed_functions)
    if verdict.error is not None:
        raise verdict.error   # an ordinary SQL error (unknown column, ...): it goes back to Gemini as such
    return checked if verdict.ok else Rejection(checked.sql, verdict.reason)


def run_select(conn: psycopg.Connection, text: str, settings: AskSettings,
               params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple], bool]:
    """A validated SELECT, read-only, bounded in time and rows, over the allowed schemas only."""
    columns, rows, truncated, _notes = run_select_capped(conn, text, settings, params)
    return columns, rows, truncated


def run_select_capped(conn: psycopg.Connection, text: str, settings: AskSettings,
                      params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple], bool, list[str]]:
    """run_select with the notes of what the caps cut: as the least-privilege role, in a READ ONLY
    transaction with timeouts, through a server-side cursor fetched under caps on rows and bytes."""
    caps = Caps(max_rows=settings.max_rows, max_value_bytes=settings.max_value_bytes,
                max_total_bytes=settings.max_total_bytes)
    with read_only(conn, statement_timeout_ms=settings.statement_timeout_ms, role=settings.read_only_role,
                   search_path=settings.schemas, generated=True, accept_superuser_risk=settings.accept_superuser_risk):
        return fetch_capped_select(conn, text, params, caps=caps, cut_on_server=True)


def error_text(exc: psycopg.Error, settings: AskSettings) -> str:
    """PostgreSQL's message as Gemini (and a person) can act on it."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return (f"the query ran longer than {settings.statement_timeout_ms} ms and was cancelled; write a "
                "cheaper one (filter, aggregate, LIMIT)")
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().splitlines()[0]
    if exc.sqlstate:
        text += f" (SQLSTATE {exc.sqlstate})"
    if diag.message_hint:
        text += f"; hint: {diag.message_hint}"
    return text
