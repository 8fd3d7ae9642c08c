"""What-if costing with a real HypoPG: Debian's postgresql-15-hypopg on the machine's PostgreSQL 15
(`make test` installs it when it can). Candidates are costed hypothetically first, useless ones are
never built, hypothetical indexes are reset, and the whole audit also runs on PostgreSQL 15 (no
GENERIC_PLAN, no pg_stat_statements.stats_since there)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from dbarch_pipeline.advisor.analyze import analyze
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.bench.runner import BenchSettings, prepare
from dbarch_pipeline.bench.whatif import hypopg_status, whatif, worth_building
from dbarch_pipeline.embedded import SERVER_SETTINGS, LocalServer
from dbarch_pipeline.models import IndexCandidate
from dbarch_pipeline.run import audit_resources, materialize_audit
from dbarch_pipeline.schema_guard import schema_definition
from dbarch_pipeline.settings import data_dir

from .conftest import FAST_SETTINGS

PG15 = Path("/usr/lib/postgresql/15/bin")
HYPOPG = Path("/usr/share/postgresql/15/extension/hypopg.control")

pytestmark = pytest.mark.skipif(not (PG15 / "postgres").exists() or not HYPOPG.exists(),
                                reason="needs Debian's postgresql-15 and postgresql-15-hypopg (make test installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg15():
    settings = {**SERVER_SETTINGS, "shared_buffers": "'64MB'"}
    folder = data_dir() / f"test-pg15-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    server = LocalServer(bin_dir=PG15, data_dir=folder, port=_free_port(), settings=tuple(settings.items()))
    server.start()
    url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE TABLE tickets (id int PRIMARY KEY, requester int NOT NULL, "
                     "state text NOT NULL, opened_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO tickets SELECT g, g % 8000, (ARRAY['open', 'closed'])[1 + g % 2], "
                     "timestamptz '2026-01-01' + make_interval(mins => g) FROM generate_series(1, 80000) g")
        conn.execute("VACUUM ANALYZE tickets")
        # the bulk load is not the application's write traffic
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
        conn.execute("SELECT pg_stat_reset()")
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)")
        for r in range(8):
            conn.execute("SELECT * FROM tickets WHERE requester = %s ORDER BY opened_at DESC LIMIT 20", (r,))
            conn.execute("SELECT count(*) FROM tickets WHERE state = %s", ("open",))
    yield url
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_hypothetical_costing_without_building(pg15):
    with psycopg.connect(pg15, autocommit=True) as conn:
        assert hypopg_status(conn) == "available"
        query = "SELECT * FROM tickets WHERE requester = $1 ORDER BY opened_at DESC LIMIT $2"
        catalog = Catalog(conn)
        item = prepare(conn, 1, query, analyze(query), catalog, BenchSettings(runs=1, param_sets=2))
        good = IndexCandidate("public", "tickets", ("requester", "opened_at"), "test")
        useless = IndexCandidate("public", "tickets", ("state",), "test")
        before = schema_definition(conn)
        good_costs = whatif(conn, good, [item], status="available", statement_timeout_ms=5000, lock_timeout_ms=500)
        useless_costs = whatif(conn, useless, [item], status="available", statement_timeout_ms=5000,
                               lock_timeout_ms=500)
        assert good_costs[1]["used"] and good_costs[1]["cost_after"] < good_costs[1]["cost_before"] / 2
        assert worth_building(good_costs) and not worth_building(useless_costs)
        # nothing was built, the extension came and went with the transaction, no hypothetical index lingers
        assert schema_definition(conn) == before
        assert hypopg_status(conn) == "available"
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%tickets_requester%%'").fetchone()[0] == 0


def test_audit_on_postgres_15_with_hypopg(pg15, store_dsn):
    result = materialize_audit(audit_resources(target_dsn=pg15, store_dsn=store_dsn,
                                               settings={**FAST_SETTINGS, "min_mean_ms": 0.1}))
    bench = {k: v.value for k, v in result.asset_materializations_for_node("benchmarked_gains")[0].metadata.items()}
    log = result.asset_materializations_for_node("optimization_log")[0].metadata["summary"].value
    assert bench["costing"] == "hypopg"
    assert log["indexes_recommended"] >= 1, (bench, log)
    with psycopg.connect(store_dsn) as conn:
        ddls = [r[0] for r in conn.execute("SELECT ddl FROM dbarch.optimization_log")]
    # ten tickets per requester: (requester) alone already serves the page, and it is the smaller index
    assert any('"tickets" ("requester"' in d for d in ddls), ddls
    with psycopg.connect(pg15) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'").fetchone()[0] == 0
