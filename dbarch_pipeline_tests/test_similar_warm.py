"""The warm `dbarch similar` (warm_similar.py), over its real unix socket, on the embedded PostgreSQL.

The warm server runs in a thread of the test process (its model is the one this process already
loaded, so no second load is paid); `dbarch similar` itself runs through the CLI's `main`. Covered:
the warm answer is the in-process answer, for many generated statements (seed printed); an unknown
target is the same clear error with exit 2; the socket is the user's alone; a stale socket or a
stopped server makes the command answer in-process; the server leaves on idle, on stop, and when
dbarch's code changed under it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from dbarch_pipeline import similar, warm_similar
from dbarch_pipeline.cli import EXIT_PROBLEM, main
from dbarch_pipeline.db import connect
from dbarch_pipeline.memory import store
from dbarch_pipeline.memory.embeddings import MODEL_NAME, Embedder
from dbarch_pipeline.memory.fingerprint import fingerprint, normalize

from .conftest import fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_embeddings import sql_statements  # noqa: E402

SEED = int(os.environ.get("DBARCH_TEST_SEED") or random.randrange(1 << 30))


@pytest.fixture(scope="module")
def warm_store(server) -> str:
    """A store whose log holds 40 generated statements' index recommendations, with real vectors."""
    dsn = fresh_database("dbarch_test_warm_similar", pg_stat_statements=False)
    statements = sql_statements(40, seed=SEED)
    vectors = Embedder().embed([normalize(s) for s in statements])
    with connect(dsn, "store") as conn:
        store.ensure_schema(conn)
        store.save_embeddings(conn, [(fingerprint(s), normalize(s), MODEL_NAME, v) for s, v in zip(statements, vectors)])
        store.write_optimization_log(conn, [
            {"target": "shop", "fingerprint": fingerprint(s), "queryid": i, "query_text": s,
             "recommendation": "an index", "kind": "index",
             "ddl": f'CREATE INDEX "t{i}_idx" ON "public"."{s.split(" FROM ")[1].split()[0] if " FROM " in s else "users"}" ("id")',
             "performance_gain": 50.0 + i, "estimated_gain": 40.0, "confidence": 0.9, "embedding": None,
             "evidence": {}, "status": "proposed", "snapshot_id": None}
            for i, s in enumerate(statements)])
    return dsn


@pytest.fixture()
def warm(tmp_path, monkeypatch):
    """A warm server in a thread, its socket under a private DBARCH_HOME."""
    monkeypatch.setenv("DBARCH_HOME", str(tmp_path))
    monkeypatch.setenv(warm_similar.IDLE_ENV, "30")
    server = warm_similar.Server(30)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while warm_similar.status() is None:
        assert thread.is_alive() and time.monotonic() < deadline, "the warm server did not start"
        time.sleep(0.05)
    yield server, thread
    warm_similar.stop()
    thread.join(10)


def test_warm_answers_are_the_in_process_answers(warm_store, warm, capsys):
    print(f"seed {SEED}", file=sys.stderr)
    probes = sql_statements(60, seed=SEED + 1)[40:]      # 20 statements, some stored, most not
    with connect(warm_store, "store") as conn:
        store.ensure_schema(conn)
        for n, probe in enumerate(probes):
            kwargs = dict(limit=3, min_similarity=0.3, target="shop" if n % 2 else None, history=bool(n % 3 == 0))
            reply = warm_similar.similar(warm_store, probe, **kwargs)
            assert reply is not None and reply["warm"], f"seed {SEED}: no warm answer for {probe}"
            local = similar.search(conn, probe, **kwargs)
            got = [(r["id"], r["similarity"], r["serves"]) for r in reply["rows"]]
            want = [(r["id"], r["similarity"], r["serves"]) for r in local["rows"]]
            assert got == want, f"seed {SEED}: {probe}"
    # the command prints the same through either path
    probe = probes[0]
    assert main(["similar", probe, "--store-dsn", warm_store, "--json", "--min-similarity", "0.3"]) == 0
    warm_out = json.loads(capsys.readouterr().out)
    assert warm_similar.stop()
    warm[1].join(10)
    assert not warm[1].is_alive() and not warm_similar.socket_path().exists()
    os.environ[warm_similar.IDLE_ENV] = "0"      # in-process, and start no process
    assert main(["similar", probe, "--store-dsn", warm_store, "--json", "--min-similarity", "0.3"]) == 0
    assert json.loads(capsys.readouterr().out) == warm_out and warm_out


def test_unknown_target_is_the_same_clear_error(warm_store, warm, capsys):
    assert main(["similar", "SELECT 1 FROM users WHERE id = $1", "--store-dsn", warm_store,
                 "--target", "nosuch"]) == EXIT_PROBLEM
    err = capsys.readouterr().err
    assert "unknown target 'nosuch'" in err and "shop" in err
    assert warm[0].requests == 1      # answered by the warm server, not in-process


def test_socket_is_private_and_unreadable_requests_are_harmless(warm):
    path = warm_similar.socket_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(b"not json\n")
        assert json.loads(s.recv(4096))["fallback"] is True
    assert warm_similar.status()["ok"]


def test_stale_socket_and_code_change_fall_back(warm_store, warm, tmp_path, capsys):
    server, thread = warm
    server.stamp = 0.0            # as if dbarch's files changed since the server started
    assert warm_similar.similar(warm_store, "SELECT 1 FROM users WHERE id = $1", limit=3, min_similarity=0.3,
                                target=None, history=False) is None
    thread.join(10)
    assert not thread.is_alive() and not warm_similar.socket_path().exists()
    # a socket file nobody listens on (a process that died): the command answers in-process
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(warm_similar.socket_path()))
    stale.close()
    os.environ[warm_similar.IDLE_ENV] = "0"
    assert main(["similar", "SELECT id FROM users WHERE email = $1", "--store-dsn", warm_store,
                 "--min-similarity", "0"]) == 0
    assert "similarity" in capsys.readouterr().out


def test_idle_server_leaves_by_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("DBARCH_HOME", str(tmp_path))
    thread = threading.Thread(target=warm_similar.Server(0.5).serve, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(15)
    assert not thread.is_alive() and time.monotonic() - started < 15
    assert not warm_similar.socket_path().exists()


def test_similar_alone_parser_leaves_mistakes_to_the_full_parser(capsys):
    """`similar` parses its options without the audit's imports; a mistake is still reported by the
    full parser (exit 2, the whole usage), and -h shows similar's own help."""
    with pytest.raises(SystemExit) as exc:
        main(["similar", "SELECT 1", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and "optimizations" in err
    with pytest.raises(SystemExit) as exc:
        main(["similar", "-h"])
    assert exc.value.code == 0 and "--min-similarity" in capsys.readouterr().out
