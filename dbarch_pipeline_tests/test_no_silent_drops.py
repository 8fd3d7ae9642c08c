"""No silent drops: every slow statement ends with a measurement or a named reason, in the report and
the JSON (with a count of the unmeasured ones); a time budget stops the measurement gracefully and
names what it skipped."""

from __future__ import annotations

from typing import Callable

import psycopg

from dbarch_pipeline import demo, report
from dbarch_pipeline.db import database_name
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database


def _items_db(name: str, rows: int, statements: list[tuple[str, Callable[[int], object]]]) -> str:
    """A table of `rows` items (2,500 shelves, an md5 code each), then the application: each
    statement of `statements` sent with %s bound, for six shelves (its function gives the value)."""
    url = fresh_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "shelf int NOT NULL, code text NOT NULL)")
        conn.execute("CREATE SEQUENCE tickets")
        conn.execute("INSERT INTO items (shelf, code) SELECT g %% 2500, md5(g::text) FROM generate_series(1, %s) g", (rows,))
        conn.execute("VACUUM ANALYZE items")
        demo.reset_statistics(conn)
        for shelf in range(6):
            for statement, value in statements:
                conn.execute(statement, (value(shelf),))
        conn.execute("SELECT pg_stat_force_next_flush()")
    return url


def _db() -> str:
    return _items_db("dbarch_test_drops", 30000, [
        ("SELECT count(*) FROM items WHERE shelf = %s", int),
        # a rollback cannot undo nextval(): never executed on the sandbox, and said so
        ("SELECT nextval('tickets'), count(*) FROM items WHERE code = %s", str)])


def _audit(url: str, store_dsn: str, **settings) -> dict:
    resources = audit_resources(target_dsn=url, store_dsn=store_dsn,
                                settings={**FAST_SETTINGS, "min_mean_ms": 0.2, **settings})
    assert materialize_audit(resources).success
    with psycopg.connect(store_dsn) as conn:
        data = report.audit_result(conn, target=database_name(url), settings=resources["audit_settings"].settings())
    data["text"] = report.format_report(data)
    return data


def test_every_slow_statement_is_measured_or_named_and_the_budget_names_what_it_skipped(server, store_dsn):
    url = _db()
    data = _audit(url, store_dsn)
    assert data["slow_queries"] == 2
    by_query = {q["query"]: q for q in data["queries"]}
    refused = next(q for text, q in by_query.items() if "nextval" in text)
    assert refused["unmeasured"].startswith("refused by the safety allow-list: calls nextval()")
    assert data["unmeasured_count"] == 1
    assert data["unmeasured"] == [{"queryid": refused["queryid"], "reason": refused["unmeasured"]}]
    assert "refused by the safety allow-list" in data["text"]
    measured = next(q for text, q in by_query.items() if "shelf" in text)
    assert measured["recommendation"] and "unmeasured" not in measured

    # a budget already spent: nothing is measured, everything is named, the audit still completes
    data = _audit(url, store_dsn, time_budget_s=1e-6)
    reasons = {q["queryid"]: q.get("unmeasured") for q in data["queries"]}
    assert data["unmeasured_count"] == 2 and all(reasons.values()), reasons
    assert sum("beyond the time budget" in r for r in reasons.values()) == 1
    assert data["recommendations"] == []
    assert "beyond the time budget" in data["text"]
    assert data["skipped_candidates"] == []   # nothing was prepared, so no experiment was even planned


def test_why_none_names_the_cap_the_planner_and_the_bar():
    """A statement with no recommendation says which of the distinct causes it was."""
    from dbarch_pipeline.report import _why_none

    def row(ddl, gain, used=True):
        return {"ddl": ddl, "status": "measured", "measured_gain_pct": gain, "evidence": {"index_used": used}}

    tried = [row("CREATE INDEX a", 92.8), row("CREATE INDEX b", 40.0)]
    assert _why_none(2, tried, 10.0, {}, {"CREATE INDEX a": 12}) == \
        "proven, but beyond the configured number of indexes: next in line (#12)"
    assert _why_none(1, [row("CREATE INDEX a", 5.0)], 10.0, {}, {}) == "best candidate gained 5.0% (< 10% bar)"
    assert _why_none(1, [row("CREATE INDEX a", 0.0, used=False)], 10.0, {}, {}) == \
        "no candidate was used by the planner"
    assert _why_none(1, [row("CREATE INDEX a", 92.8)], 10.0, {"CREATE INDEX a": "upkeep"}, {}) == "declined: upkeep"
    assert _why_none(1, [row("CREATE INDEX a", 92.8)], 10.0, {}, {}).startswith("best candidate gained 92.8% but")


def test_why_none_keeps_the_no_candidate_reason_in_its_own_words():
    from dbarch_pipeline.report import _why_none
    why = ("no candidate index: substr(code, $2, $3) holds $2, $3, which pg_stat_statements put in place of the "
           "application's constants")
    left = {"ddl": "", "status": "unmeasured", "measured_gain_pct": None,
            "evidence": {"why": why, "no_candidate": True}}
    assert _why_none(0, [left], 10.0, {}, {}) == why


def test_a_statement_whose_expression_lost_its_constants_says_so_though_timed_as_a_side_effect(server, store_dsn):
    """`substr(code, 1, 8) = $1` sent with a bound value is `substr(code, $2, $3) = $1` to
    pg_stat_statements. Without the log it has no candidate of its own, but another statement's
    candidate is on its table, so it is timed as a side effect: its reason still names the
    expression that lost its constants, not the generic "no candidate index"."""
    url = _items_db("dbarch_test_lost_constants", 40000, [
        ("SELECT id, code FROM items WHERE shelf = %s", int),
        ("SELECT id, shelf FROM items WHERE substr(code, 1, 8) = %s", lambda shelf: f"{shelf:08x}")])
    data = _audit(url, store_dsn, observed_params=False)
    lost = next(q for q in data["queries"] if "substr" in q["query"])
    assert not lost.get("recommendation")
    why = lost["why_none"]
    assert why.startswith("no candidate index: ") and "holds $2, $3" in why and "server log" in why, why
    assert data["unmeasured_count"] == 0      # a statement without a candidate is named, not unmeasured
    assert any(q.get("recommendation") for q in data["queries"] if "shelf = " in q["query"])
