"""Observed parameter values (bench/observed.py): the embedded server logs what the application
binds; the log is read back (through pg_read_binary_file, or from a folder), matched to the slow
statements, kept within the retention, and used by the benchmark, which shows "observed" instead
of the values unless the user opts in. Also the opt-out, and the parsers on csvlog / stderr text."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from dbarch_pipeline import embedded
from dbarch_pipeline.advisor.catalog import Catalog
from dbarch_pipeline.audit import analyze_with_catalog
from dbarch_pipeline.bench import observed
from dbarch_pipeline.bench.params import OBSERVED, REDACTED
from dbarch_pipeline.bench.runner import BenchSettings, _result, prepare
from dbarch_pipeline.cli import main
from dbarch_pipeline.memory.fingerprint import fingerprint
from dbarch_pipeline.memory.store import ensure_schema
from dbarch_pipeline.models import SlowQuery
from dbarch_pipeline.resources.audit_settings import AuditSettingsResource

from .conftest import fresh_database

LOOKUP = "SELECT id, email FROM members WHERE email LIKE $1 AND joined_at < now() - $2::interval"
CALLS = 80


@pytest.fixture(scope="module")
def app(server):
    """A table, and an application that looks members up by the first letters of their address
    (8 characters: about one member each) and sends a literal statement now and then."""
    seed = random.randrange(1, 10**6)
    print(f"seed {seed}")
    rng = random.Random(seed)
    url = fresh_database("dbarch_test_observed")
    sent = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""CREATE TABLE members (id int PRIMARY KEY, email text NOT NULL, joined_at timestamptz NOT NULL);
                        INSERT INTO members SELECT g, md5(g::text) || '@example.org', now() - make_interval(days => g %% 900)
                        FROM generate_series(1, 60000) g;
                        ANALYZE members""".replace("%%", "%"))
        emails = [r[0] for r in conn.execute("SELECT email FROM members TABLESAMPLE SYSTEM (5) LIMIT 500")]
        for _ in range(CALLS):
            values = (rng.choice(emails)[:8] + "%", f"{rng.randrange(1, 30)} days")
            conn.execute(LOOKUP.replace("$1", "%s").replace("$2", "%s"), values)
            # the server logs a typed parameter as its type prints it ('1 day', not '1 days')
            sent.append((values[0], conn.execute("SELECT %s::interval::text", (values[1],)).fetchone()[0]))
        for _ in range(CALLS):
            conn.execute(f"SELECT count(*) FROM members WHERE id > {rng.randrange(-9, 50000)} AND email <> 'x'")
        rows = conn.execute("SELECT queryid, query, calls, total_exec_time, mean_exec_time, rows FROM pg_stat_statements "
                            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                            "AND query ILIKE '%FROM members WHERE%' AND query NOT ILIKE '%TABLESAMPLE%'").fetchall()
    now = datetime.now(timezone.utc)
    queries = [SlowQuery(queryid=r[0], query_text=r[1], fingerprint=fingerprint(r[1]), calls=r[2], total_exec_ms=r[3],
                         mean_exec_ms=r[4], rows=r[5], shared_blks_hit=0, shared_blks_read=0, captured_at=now)
               for r in rows]
    return {"url": url, "database": url.rsplit("/", 1)[1], "sent": sent, "queries": queries}


@pytest.fixture()
def store(store_dsn):
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        ensure_schema(conn)
        yield conn


def _lookup(app) -> SlowQuery:
    return next(q for q in app["queries"] if "LIKE" in q.query_text)


def test_values_bound_by_the_application_are_read_from_the_server_log_and_used(app, store):
    with psycopg.connect(app["url"], autocommit=True) as conn:
        summary = observed.collect(conn, store, target="t", database=app["database"], queries=app["queries"],
                                   settings=observed.ObservedSettings())
        assert summary["observed_params"] == "server log", summary
        assert summary["observed_statements"] == 2, summary     # the literal statement too
        kept = observed.load(store, "t", [q.fingerprint for q in app["queries"]], observed.ObservedSettings())
        q = _lookup(app)
        values = kept[q.fingerprint]
        # the server samples one statement in five over 1 ms: some, never more than were sent
        assert 1 <= len(values) <= CALLS and set(values) <= set(app["sent"]), values[:3]
        literal = next(v for fp, v in kept.items() if fp != q.fingerprint)
        assert all(len(v) == 2 and int(v[0]) >= -9 and v[1] == "x" for v in literal)

        catalog = Catalog(conn)
        shape = analyze_with_catalog(q.query_text, catalog)
        settings = BenchSettings(runs=1, param_sets=3)
        item = prepare(conn, q.queryid, q.query_text, shape, catalog, settings, observed=values)
    assert item.param_sets and set(item.param_sets) <= set(app["sent"])
    assert all(source == OBSERVED for row in item.plan.provenance for source in row)
    # the evidence says where the values came from, not what they were, unless the user opts in
    row = _result(item, item.baseline, "none", cross=False)
    assert row["evidence"]["parameter_values"]["source_counts"] == {"observed": 2 * len(item.param_sets)}
    assert all(v == REDACTED for s in row["evidence"]["parameter_sets"] for v in s)
    assert not any(v in str(row["evidence"]) for s in item.param_sets for v in s)
    shown = _result(item, item.baseline, "none", cross=False, show_observed=True)
    assert [tuple(s) for s in shown["evidence"]["parameter_sets"]] == item.param_sets


def test_a_log_folder_the_user_points_to_and_the_retention(app, store):
    folder = embedded.data_dir() / "log"
    settings = observed.ObservedSettings(log_dirs=(str(folder),), keep_per_statement=3)
    summary = observed.collect(None, store, target="t", database=app["database"], queries=app["queries"],
                               settings=settings)
    assert summary["observed_params"] == "files" and summary["observed_values"] >= 2, summary
    kept = observed.load(store, "t", [q.fingerprint for q in app["queries"]], settings)
    assert kept and all(1 <= len(v) <= 3 for v in kept.values())


def test_collection_can_be_switched_off(app, store, monkeypatch):
    off = observed.ObservedSettings(enabled=False)
    with psycopg.connect(app["url"], autocommit=True) as conn:
        assert observed.collect(conn, store, target="t", database=app["database"], queries=app["queries"],
                                settings=off) == {"observed_params": "off"}
    assert store.execute("SELECT count(*) FROM dbarch.observed_parameters").fetchone()[0] == 0
    assert observed.load(store, "t", [q.fingerprint for q in app["queries"]], off) == {}
    monkeypatch.setenv(observed.ENV_SWITCH, "off")
    assert AuditSettingsResource().settings().observed.enabled is False
    monkeypatch.delenv(observed.ENV_SWITCH)
    assert AuditSettingsResource().settings().observed.enabled is True
    assert AuditSettingsResource(observed_params=False).settings().observed.enabled is False


def test_the_flags_and_their_errors(tmp_path, capsys):
    class Args:
        no_observed_params = True
        log_file = None
        log_dir = [str(tmp_path)]
        observed_keep = 7
        observed_days = None
        show_observed_values = False

    assert observed.cli_settings(Args()) == {"observed_params": False, "log_dirs": [str(tmp_path)], "observed_keep": 7}
    code = main(["audit", "--target-dsn", "postgresql://nobody@127.0.0.1:1/x", "--log-file", str(tmp_path / "no.json")])
    assert code == 2 and "--log-file" in capsys.readouterr().err


def test_csvlog_and_stderr_entries():
    csv_line = ('2026-03-01 10:00:00.123 UTC,"app","shop",42,"127.0.0.1:5000",abc.1,3,"SELECT",'
                '2026-03-01 09:00:00 UTC,3/7,0,LOG,00000,"duration: 12.5 ms  execute <unnamed>: SELECT * FROM t '
                'WHERE a = $1 AND b = $2","Parameters: $1 = \'O\'\'Brien\', $2 = NULL",,,,,,,,"psql","client backend",,'
                '123456789\n')
    (entry,) = observed.parse_log("postgresql.csv", csv_line)
    assert entry.params == ("O'Brien", None) and entry.query_id == 123456789 and entry.database == "shop"
    stderr = ("2026-03-01 10:00:00.123 UTC [42] LOG:  duration: 3.2 ms  execute S_1: SELECT *\n"
              "\tFROM t WHERE a = $1\n"
              "2026-03-01 10:00:00.123 UTC [42] DETAIL:  Parameters: $1 = '7'\n"
              "2026-03-01 10:00:01 UTC [42] LOG:  duration: 1.0 ms  statement: SELECT 1\n")
    first, second = observed.parse_log("postgresql.log", stderr)
    assert first.statement == "SELECT *\nFROM t WHERE a = $1" and first.params == ("7",)
    assert second.params is None and second.duration_ms == 1.0
    assert observed.literal_values("SELECT * FROM t WHERE a IN ($1 /*, ... */) AND b > $2 LIMIT $3",
                                   "select * from t where a in ('x', 'y') and b > -2.5 limit 10") == ("x", "-2.5", "10")
    assert observed.literal_values("SELECT * FROM t WHERE a = $1", "SELECT * FROM u WHERE a = 1") is None


def test_a_role_that_may_not_read_the_log_of_the_embedded_server(app, store):
    """The embedded server is dbarch's own: when the target role may not call pg_ls_logdir (a
    least-privilege role), its log folder is read directly."""
    role = f"dbarch_test_nolog_{app['database'].rsplit('_', 1)[1]}"
    with psycopg.connect(app["url"], autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = app["url"].replace("postgres@", f"{role}@", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM pg_ls_logdir()")
            summary = observed.collect(conn, store, target="t", database=app["database"], queries=app["queries"],
                                       settings=observed.ObservedSettings())
        assert summary["observed_params"] == "embedded server log" and summary["observed_statements"] == 2, summary
    finally:
        with psycopg.connect(app["url"], autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_an_older_data_folder_gets_the_logging_settings_once(tmp_path):
    """A folder initialised by an older dbarch (logging_collector off, no parameter logging) is
    brought up to date at start; a value the user changed stays."""
    conf = tmp_path / "postgresql.auto.conf"
    conf.write_text("# written by dbarch\nlogging_collector = off\nwork_mem = '64MB'\n")
    server = embedded.LocalServer(bin_dir=tmp_path, data_dir=tmp_path, port=1)
    server._add_missing_settings()
    server._add_missing_settings()
    text = conf.read_text()
    assert text.count("# added by dbarch") == 1
    lines = [line for line in text.splitlines() if "=" in line]
    last = {line.split("=")[0].strip(): line.split("=", 1)[1].strip() for line in lines}
    assert last["logging_collector"] == "on" and last["work_mem"] == "'64MB'"
    assert all(last[k] == v for k, v in embedded.LOG_SETTINGS.items())


def _bind_and_read_back(url: str, prefixes: list[str]) -> SlowQuery:
    """An application that binds `prefixes`, every call logged; its statement as pg_stat_statements keeps it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET log_min_duration_statement = 0")
        conn.execute("CREATE TABLE IF NOT EXISTS members (id int PRIMARY KEY, email text NOT NULL)")
        for prefix in prefixes:
            conn.execute("SELECT id FROM members WHERE email LIKE %s", (prefix,))
        qid, text = conn.execute("SELECT queryid, query FROM pg_stat_statements WHERE query LIKE "
                                 "'SELECT id FROM members WHERE email LIKE%%'").fetchone()
    return SlowQuery(queryid=qid, query_text=text, fingerprint=fingerprint(text), calls=len(prefixes), total_exec_ms=1.0,
                     mean_exec_ms=1.0, rows=0, shared_blks_hit=0, shared_blks_read=0,
                     captured_at=datetime.now(timezone.utc))


def test_values_logged_for_an_earlier_database_of_the_same_name_are_not_used(server, store, monkeypatch):
    """The log names databases by name, and PostgreSQL 18 gives the same statement on recreated tables
    the same query_id: only the database's creation time (its PG_VERSION file) tells the two apart."""
    seed = random.randrange(1, 10**6)
    print(f"seed {seed}")
    rng = random.Random(seed)
    old = [f"old{rng.randrange(10**6)}%" for _ in range(4)]
    new = [f"new{rng.randrange(10**6)}%" for _ in range(3)]
    url = fresh_database("dbarch_test_observed_recreated")
    first = _bind_and_read_back(url, old)
    url = fresh_database("dbarch_test_observed_recreated")     # dropped and created again
    q = _bind_and_read_back(url, new)
    assert q.queryid == first.queryid        # why the query_id alone cannot tell (PostgreSQL 18)
    with psycopg.connect(url, autocommit=True) as conn:
        created = observed.database_created_at(conn)
        assert created is not None and created <= datetime.now(timezone.utc)
        summary = observed.collect(conn, store, target="recreated", database=url.rsplit("/", 1)[1], queries=[q],
                                   settings=observed.ObservedSettings())
    assert summary["observed_not_before"] == created.isoformat(), summary
    kept = observed.load(store, "recreated", [q.fingerprint], observed.ObservedSettings())
    assert sorted(v[0] for v in kept[q.fingerprint]) == sorted(new), kept
    # another server's files are out of reach: pg_stat_file's whole second, moved to its end
    with psycopg.connect(url, autocommit=True) as conn:
        monkeypatch.setattr(observed, "_embedded_log_dir", lambda conn: None)
        whole = observed.database_created_at(conn)
    assert created <= whole <= created + timedelta(seconds=1), (created, whole)
