"""Least privilege: generated SQL never runs as a superuser unless the user accepts the risk by a
loudly named flag; the embedded default's dbarch_reader reads the allowed schema only and has no
dangerous membership; `dbarch doctor` names each problem with the statement that fixes it; rewrites
are proven only on a sandbox."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from dbarch_pipeline.ask.answer import AskSettings, run_select
from dbarch_pipeline.cli import main
from dbarch_pipeline.db import connect
from dbarch_pipeline.errors import DbarchError
from dbarch_pipeline.llm.validate import validate_rewrite
from dbarch_pipeline.resources.postgres import SandboxDatabase
from dbarch_pipeline.safety.roles import ACCEPT_FLAG, READER_ROLE, ExecutionPolicy, bind_policy, doctor, effective_role

from .conftest import db_name, fresh_database


@pytest.fixture(scope="module")
def db(server):
    url = fresh_database("dbarch_test_roles", pg_stat_statements=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int)")
        conn.execute("INSERT INTO items SELECT g, g % 5 FROM generate_series(1, 100) g")
        conn.execute("CREATE SCHEMA private")
        conn.execute("CREATE TABLE private.notes (body text)")
    return url


def test_generated_sql_runs_as_the_reader_never_as_a_superuser(db):
    with connect(db, "target") as conn:
        assert effective_role(conn) == READER_ROLE
        who = run_select(conn, "SELECT current_user, current_setting('is_superuser')", AskSettings())
        assert who[1] == [(READER_ROLE, "off")]
        with pytest.raises(DbarchError) as err:
            run_select(conn, "SELECT 1", AskSettings(read_only_role=conn.info.user))
        assert "superuser" in err.value.problem and ACCEPT_FLAG in err.value.fix
        accepted = run_select(conn, "SELECT current_setting('is_superuser')",
                              AskSettings(read_only_role=conn.info.user, accept_superuser_risk=True))
        assert accepted[1] == [("on",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run_select(conn, "SELECT * FROM private.notes", AskSettings(schemas=("public", "private")))
        limits = run_select(conn, "SELECT current_setting('temp_file_limit'), "
                                  "current_setting('client_connection_check_interval'), "
                                  "current_setting('transaction_read_only')", AskSettings())
        assert limits[1] == [("256MB", "1s", "on")]


def test_doctor_names_the_fixes(db, capsys):
    with connect(db, "target") as conn:
        assert doctor(conn)["ok"]
        broad = db_name("dbarch_test_broad_role")
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(broad)))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(broad)))
        conn.execute(sql.SQL("GRANT pg_read_server_files TO {}").format(sql.Identifier(broad)))
        conn.execute(sql.SQL("GRANT SELECT ON private.notes TO {}").format(sql.Identifier(broad)))
        try:
            result = doctor(conn, broad)
            fixes = "\n".join(p["fix"] for p in result["problems"])
            assert not result["ok"]
            assert f'REVOKE pg_read_server_files FROM "{broad}";' in fixes
            assert f'REVOKE SELECT ON ALL TABLES IN SCHEMA "private" FROM "{broad}";' in fixes
            assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "{broad}";' in fixes
            assert main(["doctor", "--target-dsn", db, "--role", broad]) == 1
            assert "pg_read_server_files" in capsys.readouterr().out
            assert main(["doctor", "--target-dsn", db, "--role", conn.info.user]) == 1
            assert "is a superuser" in capsys.readouterr().out
        finally:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(broad)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(broad)))
    assert main(["doctor", "--target-dsn", db]) == 0


def test_rewrites_are_proven_on_a_sandbox_only(db):
    primary = "postgresql://app@db.example.com:5432/app"
    assert not SandboxDatabase(dsn=primary, named=False).proofs_allowed(primary, True)
    assert SandboxDatabase(dsn=primary).proofs_allowed(primary, True)          # named as its own sandbox
    assert not SandboxDatabase(dsn=primary).proofs_allowed(primary, False)    # another target: never named
    assert SandboxDatabase().proofs_allowed(db, False)                         # dbarch's own embedded server
    with connect(db, "sandbox") as conn:
        bind_policy(conn, ExecutionPolicy(proofs_allowed=False))
        refused = validate_rewrite("SELECT id FROM items WHERE owner = $1", "SELECT id FROM items WHERE owner = $1",
                                   conn, [("1",)])
    assert "rewrite proofs run on a sandbox only" in refused.reason
