"""Shared fixtures: the embedded PostgreSQL (real), fresh databases per session, a small demo.

The tests use the project's own embedded server but their own databases (dbarch_test_*), so a
developer's demo data is never touched.
"""

from __future__ import annotations

import os
import tempfile

import psycopg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# pull requests from CLI runs go to a throwaway local repository, never a developer's
os.environ.setdefault("DBARCH_PR_REPO", tempfile.mkdtemp(prefix="dbarch-test-pr-"))
os.environ.setdefault("DBARCH_SIMILAR_IDLE_S", "0")   # no warm `dbarch similar` process outlives a test
os.environ.pop("GITHUB_TOKEN", None)

from dbarch_pipeline import demo, embedded  # noqa: E402
from dbarch_pipeline.run import audit_resources  # noqa: E402


def generated_seeds(count: int) -> list[int]:
    """Random seeds for a generated-input test, or the ones DBARCH_TEST_SEEDS=s1,s2 replays (each test
    prints the seed it ran)."""
    import random

    given = [int(s) for s in os.environ.get("DBARCH_TEST_SEEDS", "").split(",") if s]
    return given or [random.randrange(1, 10**6) for _ in range(count)]


SMALL_DEMO_ROWS = 60_000
# Several test sessions may share the embedded server (a developer's run beside a helper's): each
# session's databases carry its own suffix, and are dropped when it ends.
SUFFIX = os.environ.get("DBARCH_TEST_DB_SUFFIX") or str(os.getpid())
_created: set[str] = set()
FAST_SETTINGS = {"runs": 3, "param_sets": 3, "min_mean_ms": 0.5, "min_calls": 3}


def db_name(name: str) -> str:
    return f"{name}_{SUFFIX}"


def fresh_database(name: str, *, pg_stat_statements: bool = True) -> str:
    name = db_name(name)
    _created.add(name)
    return embedded.recreate_database(name, pg_stat_statements=pg_stat_statements)


@pytest.fixture(scope="session")
def server():
    status = embedded.start()
    yield status
    for name in sorted(_created):
        embedded.drop_database(name)


@pytest.fixture(scope="session")
def demo_target(server) -> str:
    """A small learning-platform demo with its workload already run (pg_stat_statements filled)."""
    url = fresh_database("dbarch_test_target")
    with psycopg.connect(url, autocommit=True) as conn:
        demo.load(conn, demo.Scale(behavior_rows=SMALL_DEMO_ROWS), progress=lambda _m: None)
        demo.run_workload(conn, repeat=0.5, progress=lambda _m: None)
    return url


@pytest.fixture()
def store_dsn(server) -> str:
    """An empty store database for one test."""
    return fresh_database("dbarch_test_store", pg_stat_statements=False)


@pytest.fixture()
def resources_for(store_dsn):
    def build(target_dsn: str, **settings) -> dict:
        return audit_resources(target_dsn=target_dsn, store_dsn=store_dsn,
                               settings={**FAST_SETTINGS, **settings})
    return build


@pytest.fixture(autouse=True)
def _process_environment():
    """A CLI run hands DSNs holding a password to its resources through this process's environment
    (never through Dagster's config). A real command line exits with that environment; a test must
    not pass it on to the next one."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("DBARCH_")}
    yield
    for key in [k for k in os.environ if k.startswith("DBARCH_") and k not in saved]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture()
def webhook():
    """A local alert receiver speaking real HTTP: (its URL, the JSON bodies POSTed to it)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/alerts", received
    httpd.shutdown()
    httpd.server_close()
