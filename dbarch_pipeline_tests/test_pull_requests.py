"""Pull requests for proven recommendations, end to end.

The real PyGithub client talks HTTP to a local fake of GitHub's REST API (fakes/github_server.py);
the log rows come from a real audit of the demo database (and, for the threshold and failure cases,
rows written through the store with that audit's evidence). Covered: the first run opens exactly the
expected pull requests with the expected branches, files and body; a second run opens none and
updates in place; low-confidence, low-gain, applied and drop recommendations open none; closed
pull requests stay closed unless the evidence changed materially; a bad token, an exhausted rate
limit, a missing repository and branch protection give clear errors without the token and leave
the log consistent; without a token the same branch is committed to a local git repository whose
migration applies to a copy of the demo database and reverts cleanly (raw SQL and Alembic); the
Alembic and Prisma templates render as their tools expect.
"""

from __future__ import annotations

import ast
import copy
import logging
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg.rows import dict_row

from dbarch_pipeline import demo
from dbarch_pipeline.defs.pr_assets import PR_ASSETS, optimization_pull_requests
from dbarch_pipeline.errors import DbarchError
from dbarch_pipeline.memory import store as memory
from dbarch_pipeline.prs import body as bodies
from dbarch_pipeline.prs import publish
from dbarch_pipeline.prs.migrations import MigrationLayout, UnsupportedDDL, concurrent_index, render
from dbarch_pipeline.resources.github import GitHubResource
from dbarch_pipeline.resources.postgres import StoreDatabase, TargetDatabase
from dbarch_pipeline.defs.partitions import audit_key, week_of
from dbarch_pipeline.run import audit_resources, materialize_audit, register_target

from .conftest import FAST_SETTINGS, fresh_database


def branch_of(ddl: str) -> str:
    return publish.index_branch("dbarch/", concurrent_index(ddl))
from .fakes.github_server import FakeGitHub

TOKEN = "ghp_S3cretT0kenThatMustNeverLeak"
TARGET = "shop"
CREATED = datetime(2026, 3, 1, 2, 0, 0, tzinfo=timezone.utc)

RECENT_EVENTS = ('SELECT id, event_type, metadata, "timestamp" FROM behavior_log WHERE user_id = $1 '
                 'ORDER BY "timestamp" DESC LIMIT $2')
RECENT_DDL = 'CREATE INDEX "behavior_log_user_id_timestamp_idx" ON "public"."behavior_log" ("user_id", "timestamp")'
PROGRESS = "SELECT status, progress_pct FROM user_progress WHERE user_id = $1 AND lesson_id = $2"
PROGRESS_DDL = 'CREATE INDEX "user_progress_user_id_lesson_id_idx" ON "public"."user_progress" ("user_id", "lesson_id")'
EVENTS_BY_TYPE = "SELECT count(*) FROM behavior_log WHERE event_type = $1 AND user_id = $2"
EVENTS_BY_TYPE_DDL = ('CREATE INDEX "behavior_log_event_type_user_id_idx" ON "public"."behavior_log" '
                      '("event_type", "user_id")')


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def audit(demo_target) -> dict:
    """One real audit of the demo database: its log rows (with embeddings) and its target name."""
    store_dsn = fresh_database("dbarch_test_prs_audit", pg_stat_statements=False)
    resources = audit_resources(target_dsn=demo_target, store_dsn=store_dsn, settings=FAST_SETTINGS)
    assert materialize_audit(resources).success
    with resources["store"].connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM dbarch.optimization_log ORDER BY fingerprint").fetchall()
    if not rows:
        from dbarch_pipeline import report

        with resources["store"].connect() as conn:
            data = report.audit_result(conn, target=resources["target"].target_name(),
                                       settings=resources["audit_settings"].settings())
        pytest.fail(f"the audit of the demo database recommended nothing: {data['declined']} "
                    f"{[(q['query'][:40], q.get('why_none')) for q in data['queries']]}")
    return {"rows": rows, "target": resources["target"].target_name(), "target_dsn": demo_target}


@pytest.fixture()
def gh():
    with FakeGitHub(token=TOKEN) as server:
        yield server


@pytest.fixture()
def store(store_dsn) -> StoreDatabase:
    return StoreDatabase(dsn=store_dsn)


def github_publisher(gh: FakeGitHub, token: str = TOKEN, repository: str | None = None) -> publish.GitHubPublisher:
    # no pacing between calls: the fake has no secondary rate limit to respect
    return publish.GitHubPublisher(token=token, repository=repository or gh.full_name, base_url=gh.base_url,
                                   seconds_between_requests=0, seconds_between_writes=0)


def log_row(evidence: dict, *, fingerprint: str, query: str, ddl: str, confidence: float, gain: float,
            kind: str = "index", status: str | None = None, **evidence_updates) -> dict:
    """A log row as write_log builds it, with the real audit's evidence as the measurements."""
    ev = copy.deepcopy(evidence)
    ev.update(evidence_updates)
    return {"target": TARGET, "fingerprint": fingerprint, "queryid": int(fingerprint[:8], 16), "query_text": query,
            "recommendation": f"{ddl.split(' (')[0]} ({ev.get('reason', 'equality columns')})",
            "kind": kind, "ddl": ddl, "performance_gain": gain, "estimated_gain": gain - 3.0,
            "confidence": confidence, "embedding": None, "evidence": ev, "status": status, "snapshot_id": None}


def seed(store: StoreDatabase, rows: list[dict]) -> None:
    with store.connect() as conn:
        memory.write_optimization_log(conn, rows)
        # every row of a real audit run shares one creation time; fixed here so file names are known
        conn.execute("UPDATE dbarch.optimization_log SET created_at = %s", (CREATED,))


def pr_columns(store: StoreDatabase) -> dict[str, tuple]:
    with store.connect() as conn:
        rows = conn.execute("SELECT fingerprint, pr_url, pr_state, pr_number, pr_branch, pr_evidence_hash "
                            "FROM dbarch.optimization_log").fetchall()
    return {r[0]: r[1:] for r in rows}


def status_of(store: StoreDatabase, fingerprint: str) -> tuple:
    """(status, rejected_at is set, rejected_by) of a statement's row."""
    with store.connect() as conn:
        return conn.execute("SELECT status, rejected_at IS NOT NULL, rejected_by FROM dbarch.optimization_log "
                            "WHERE fingerprint = %s", (fingerprint,)).fetchone()


def run(store: StoreDatabase, publisher: publish.Publisher, **settings) -> dict:
    with store.connect() as conn:
        return publish.publish_pull_requests(conn, publisher, target=TARGET,
                                             settings=publish.PublishSettings(**settings))


@pytest.fixture()
def two_recommendations(audit, store) -> list[dict]:
    """Two proven recommendations on two tables, one that is not proven enough, one already applied
    and one drop recommendation: only the first two may become pull requests."""
    ev = audit["rows"][0]["evidence"]
    rows = [
        log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS, ddl=RECENT_DDL, confidence=0.93, gain=99.2,
                reason="equality column, then the ORDER BY column for ORDER BY ... LIMIT",
                similar_optimizations=[{"ddl": EVENTS_BY_TYPE_DDL, "performance_gain": 87.5, "confidence": 0.9,
                                        "similarity": 0.83, "applied_at": "2026-01-10T02:00:00+00:00",
                                        "realized_gain": 81.0}]),
        log_row(ev, fingerprint="bbbb2222bbbb2222", query=PROGRESS, ddl=PROGRESS_DDL, confidence=0.86, gain=74.0),
        log_row(ev, fingerprint="cccc3333cccc3333", query=EVENTS_BY_TYPE, ddl=EVENTS_BY_TYPE_DDL,
                confidence=0.55, gain=60.0),
        log_row(ev, fingerprint="dddd4444dddd4444", query=EVENTS_BY_TYPE.replace("count(*)", "count(id)"),
                ddl=EVENTS_BY_TYPE_DDL, confidence=0.97, gain=90.0, status="applied"),
        log_row(ev, fingerprint="eeee5555eeee5555", query="SELECT 1 FROM users WHERE email = $1",
                ddl='DROP INDEX CONCURRENTLY IF EXISTS "public"."users_email_dup_idx"', confidence=0.99, gain=100.0,
                kind="drop"),
    ]
    seed(store, rows)
    return rows


# -- GitHub ------------------------------------------------------------------------------------------

def test_first_run_from_the_real_audit_opens_exactly_the_expected_pull_requests(audit, gh, store_dsn):
    """The Dagster asset over the real audit's log: one pull request per recommendation above the
    thresholds, on dbarch/<fingerprint>, adding the up and down migrations, with the full body."""
    with psycopg.connect(store_dsn) as conn:
        memory.apply_schema(conn)
        memory.write_optimization_log(conn, [{**r, "status": r["status"]} for r in audit["rows"]])
    min_confidence, min_gain = 0.0, 10.0   # every proven row (the audit's confidence formula is tested elsewhere)
    expected = {r["fingerprint"]: r for r in audit["rows"]
                if r["kind"] == "index" and (r["confidence"] or 0) > min_confidence
                and (r["performance_gain"] or 0) >= min_gain}
    assert expected, "no audited recommendation to publish"
    # one pull request per index, on the branch of the statement it was chosen for (an index the
    # workload-wide selection shares between statements is not proposed twice)
    owners: dict[str, dict] = {}
    for r in sorted(expected.values(), key=lambda r: (bool(r["evidence"].get("cross_statement")),
                                                      r["created_at"], r["fingerprint"])):
        owners.setdefault(r["ddl"], r)
    github = GitHubResource(token=TOKEN, repository=gh.full_name, base_url=gh.base_url, min_confidence=min_confidence,
                            min_gain_pct=min_gain, seconds_between_requests=0, seconds_between_writes=0)
    resources = {"store": StoreDatabase(dsn=store_dsn), "target": TargetDatabase(dsn=audit["target_dsn"]),
                 "github": github}
    instance = dg.DagsterInstance.ephemeral()
    name = resources["target"].target_name()
    register_target(instance, name, week_of(datetime.now(timezone.utc)))
    result = dg.materialize(PR_ASSETS, resources=resources, instance=instance,
                            partition_key=audit_key(name, week_of(datetime.now(timezone.utc))))
    assert result.success

    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["opened"].value == len(owners) and meta["eligible"].value == len(expected)
    assert meta["updated"].value == 0 and meta["skipped"].value == 0
    assert TOKEN not in repr(meta) and TOKEN not in repr(github) and TOKEN not in repr(result.all_events)

    # branches named by table and index: readable, and stable while the index is the same
    assert {pr["head"] for pr in gh.pulls.values()} == {branch_of(ddl) for ddl in owners}
    assert len(gh.calls("POST", r"/pulls$")) == len(owners)
    assert not gh.unhandled
    with psycopg.connect(store_dsn) as conn:
        created = dict(conn.execute("SELECT fingerprint, created_at FROM dbarch.optimization_log").fetchall())
    for pr in gh.pulls.values():
        row = next(owners[ddl] for ddl in owners if branch_of(ddl) == pr["head"])
        ix = concurrent_index(row["ddl"])
        anchor = min((r for r in expected.values() if r["ddl"] == row["ddl"]),
                     key=lambda r: (r["created_at"], r["fingerprint"]))
        stamp = created[anchor["fingerprint"]].astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")
        up, down = f"migrations/{stamp}_{ix.name}.up.sql", f"migrations/{stamp}_{ix.name}.down.sql"
        tree = gh.tree(pr["head"])
        assert set(tree) == {"README.md", up, down}
        assert tree[up].rstrip().endswith(f"{ix.create};") and "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in tree[up]
        assert tree[down].rstrip().endswith(f'DROP INDEX CONCURRENTLY IF EXISTS "{ix.schema}"."{ix.name}";')
        assert "outside a transaction" in tree[up]
        assert pr["base"] == "main" and pr["labels"] == ["dbarch", "database-performance"]
        assert pr["title"] == f"dbarch: add index {ix.name} on {ix.qualified_table}"
        text = pr["body"]
        for section in ("**The statement**", "**The recommendation**", "**Before and after**",
                        "Parameter sets", "<details><summary>Plan without the index</summary>",
                        "<details><summary>Plan with the index</summary>", "**What the index costs**",
                        "**Similar past optimizations**", f"**Confidence {row['confidence']:.2f}**", "twice_as_fast",
                        f"`{up}`", f"`{down}`"):
            assert section in text, section
        assert row["query_text"].strip() in text and ix.create in text
        assert "Write estimate: every insert and every non-HOT update" in text   # from the target's statistics
        assert f"| {row['evidence']['calls']:,} |" in text
        for values in row["evidence"]["parameter_sets"]:
            assert str(values[0])[:20] in text
        marker = bodies.parse_marker(text)
        assert marker["key"] == row["fingerprint"] and marker["files"] == sorted([up, down])

    columns = pr_columns(StoreDatabase(dsn=store_dsn))
    for fp, row in expected.items():
        url, state, number, branch, evidence = columns[fp]
        # every statement's row points at the pull request of its index
        owner = owners[row["ddl"]]["fingerprint"]
        assert state == "open" and branch == branch_of(row["ddl"]) and owner and url == f"{gh.root_url}/acme/shop/pull/{number}"
        assert evidence == bodies.parse_marker(gh.pulls[number]["body"])["evidence"]


def test_second_run_opens_none_and_updates_in_place(two_recommendations, gh, store):
    first = run(store, github_publisher(gh))
    assert (first["eligible"], first["opened"]) == (2, 2)
    assert {pr["head"] for pr in gh.pulls.values()} == {branch_of(RECENT_DDL), branch_of(PROGRESS_DDL)}
    published = pr_columns(store)
    writes = len(gh.writes())

    again = run(store, github_publisher(gh))
    assert (again["opened"], again["unchanged"]) == (0, 2)
    assert len(gh.writes()) == writes, "an unchanged pull request must not be written"
    assert pr_columns(store) == published

    # next week's audit measures the same index again, a little differently: within the clock's
    # noise, the pull request is left alone
    rows = copy.deepcopy(two_recommendations[:1])
    rows[0]["evidence"]["ms_after"] = 0.041
    rows[0]["performance_gain"] = 98.7
    with store.connect() as conn:
        memory.write_optimization_log(conn, rows)
    noise = run(store, github_publisher(gh))
    assert (noise["opened"], noise["updated"], noise["unchanged"]) == (0, 0, 2)
    assert len(gh.writes()) == writes

    # then the gain moves materially (10 points or more): the same pull request is updated in place
    rows[0]["performance_gain"] = 82.0
    with store.connect() as conn:
        memory.write_optimization_log(conn, rows)
    third = run(store, github_publisher(gh))
    assert (third["opened"], third["updated"], third["unchanged"]) == (0, 1, 1)
    assert len(gh.pulls) == 2 and len(gh.calls("POST", r"/pulls$")) == 2
    number = published["aaaa1111aaaa1111"][2]
    assert len(gh.calls("PATCH", rf"/pulls/{number}$")) == 1
    assert "0.041 ms" in gh.pulls[number]["body"] and "82.0%" in gh.pulls[number]["body"]
    assert pr_columns(store)["aaaa1111aaaa1111"][:4] == published["aaaa1111aaaa1111"][:4]


def test_body_explains_confidence_and_similar_optimizations(two_recommendations, gh, store):
    run(store, github_publisher(gh))
    text = next(pr["body"] for pr in gh.pulls.values() if pr["head"] == branch_of(RECENT_DDL))
    assert "| similarity | index | measured gain | realized gain |" in text
    assert "| 0.83 |" in text and "87.5%" in text and "81.0%" in text and "2026-01-10" in text
    for part in ("faster", "twice_as_fast"):
        assert f"| {part} |" in text
    assert "equality column, then the ORDER BY column" in text
    assert text.count("<details>") == 2


def test_low_confidence_low_gain_applied_and_drop_recommendations_open_none(two_recommendations, gh, store):
    summary = run(store, github_publisher(gh), min_confidence=0.95, min_gain_pct=10)
    assert summary["eligible"] == 0 and summary["pull_requests"] == 0
    assert gh.requests == [], "nothing to publish must not even contact GitHub"
    reasons = {d["fingerprint"]: d["reason"] for d in summary["not_eligible_detail"]}
    assert "not above 0.95" in reasons["aaaa1111aaaa1111"]
    assert reasons["dddd4444dddd4444"] == "status applied"
    assert "eeee5555eeee5555" not in reasons   # drop recommendations are never even considered

    summary = run(store, github_publisher(gh), min_confidence=0.8, min_gain_pct=80)
    assert summary["pull_requests"] == 1 and {pr["head"] for pr in gh.pulls.values()} == {branch_of(RECENT_DDL)}
    assert "below 80%" in {d["fingerprint"]: d["reason"] for d in summary["not_eligible_detail"]}["bbbb2222bbbb2222"]
    assert all(state is None for _, state, *_ in [pr_columns(store)[fp] for fp in
                                                   ("bbbb2222bbbb2222", "cccc3333cccc3333", "dddd4444dddd4444",
                                                    "eeee5555eeee5555")])


def test_closed_pull_request_is_reopened_only_when_the_evidence_changed_materially(two_recommendations, gh, store):
    run(store, github_publisher(gh))
    number = pr_columns(store)["aaaa1111aaaa1111"][2]
    gh.close_pull(number)

    summary = run(store, github_publisher(gh))
    assert summary["skipped"] == 1 and summary["opened"] == 0
    assert pr_columns(store)["aaaa1111aaaa1111"][1] == "closed"
    assert not gh.calls("PATCH", rf"/pulls/{number}$")
    # closed without merging: the recommendation is rejected, with when and by whom
    assert status_of(store, "aaaa1111aaaa1111")[0] == "rejected"
    assert summary["rejected"] == [pr_columns(store)["aaaa1111aaaa1111"][0]]
    assert status_of(store, "aaaa1111aaaa1111")[1:] == (True, "reviewer")

    def remeasure(**changes):
        rows = copy.deepcopy(two_recommendations[:1])
        rows[0].update(changes)
        with store.connect() as conn:
            memory.write_optimization_log(conn, rows)

    remeasure(performance_gain=96.0, confidence=0.9)        # jitter, not news
    assert run(store, github_publisher(gh))["skipped"] == 1
    remeasure(performance_gain=80.0, confidence=0.9)        # 19 points less: the reviewer decided on other facts
    summary = run(store, github_publisher(gh))
    assert summary["reopened"] == 1 and summary["opened"] == 0 and len(gh.pulls) == 2
    assert gh.pulls[number]["state"] == "open" and "80.0%" in gh.pulls[number]["body"]
    assert pr_columns(store)["aaaa1111aaaa1111"][1:3] == ("open", number)
    assert status_of(store, "aaaa1111aaaa1111") == ("proposed", False, None)    # proposed again

    gh.close_pull(number, merged=True)
    summary = run(store, github_publisher(gh))
    # read back before publishing: merged, so not eligible any more (the sensor marks it applied)
    assert summary["merged"] == [pr_columns(store)["aaaa1111aaaa1111"][0]] and summary["skipped"] == 0
    assert pr_columns(store)["aaaa1111aaaa1111"][1] == "merged"
    # merged is final: the row is no longer eligible, GitHub is not asked again about it
    requests = len(gh.requests)
    summary = run(store, github_publisher(gh))
    assert summary["eligible"] == 1
    assert not [r for r in gh.requests[requests:] if "behavior_log_user_id_timestamp_idx" in str(r.query)]

    # a later audit proposes another index for the same statement: a new pull request on that index's
    # own branch, made from the base branch, which holds the merged migration now
    merged_files = {p for p in gh.tree("main") if p.startswith("migrations/")}
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(two_recommendations[0]["evidence"],
                                                     fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=EVENTS_BY_TYPE_DDL, confidence=0.95, gain=97.0)])
    summary = run(store, github_publisher(gh))
    assert summary["opened"] == 1 and len(gh.pulls) == 3
    assert merged_files and merged_files < set(gh.tree(branch_of(EVENTS_BY_TYPE_DDL)))
    assert not gh.calls("DELETE")


def test_superseded_pull_request_is_closed_with_a_comment_naming_its_replacement(two_recommendations, gh, store):
    """A re-run chooses another index for a statement whose pull request is open: the new index gets
    its own pull request, the old one is closed (by dbarch, so not 'rejected') with a comment linking
    the new one; a pull request another current recommendation still uses stays open."""
    ev = two_recommendations[0]["evidence"]
    run(store, github_publisher(gh))
    old_url, _, old_number, old_branch, _ = pr_columns(store)["aaaa1111aaaa1111"]
    other_number = pr_columns(store)["bbbb2222bbbb2222"][2]
    new_ddl = 'CREATE INDEX "behavior_log_user_id_idx" ON "public"."behavior_log" ("user_id")'
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=new_ddl, confidence=0.95, gain=98.0)],
                                      target=TARGET, evaluated=["aaaa1111aaaa1111"])
    summary = run(store, github_publisher(gh))
    assert summary["opened"] == 1 and summary["closed_superseded"] == [old_url]
    new_pr = next(p for p in gh.pulls.values() if p["head"] == branch_of(new_ddl))
    new_url = f"{gh.root_url}/{gh.full_name}/pull/{new_pr['number']}"
    assert gh.pulls[old_number]["state"] == "closed" and gh.pulls[old_number]["merged_at"] is None
    [comment] = gh.pulls[old_number]["comments"]
    assert new_url in comment and new_ddl in comment
    assert gh.pulls[other_number]["state"] == "open" and not gh.pulls[other_number].get("comments")
    with store.connect() as conn:
        rows = conn.execute("SELECT ddl, status, pr_state FROM dbarch.optimization_log "
                            "WHERE fingerprint = 'aaaa1111aaaa1111'").fetchall()
    assert sorted(rows) == sorted([(RECENT_DDL, "superseded", "closed"), (new_ddl, "proposed", "open")])
    assert old_branch in gh.branches          # closed, never deleted: the history stays readable

    # idempotent: nothing more to close, and the closed one is not read back as a rejection
    requests = len(gh.requests)
    summary = run(store, github_publisher(gh))
    assert summary["closed_superseded"] == [] and summary["rejected"] == []
    assert not gh.calls("POST", rf"/issues/{old_number}/comments")[1:]
    assert not [r for r in gh.requests[requests:] if r.method != "GET"]


def test_review_sensor_marks_rejected_and_closes_superseded(two_recommendations, gh, store, monkeypatch):
    """The pull_request_reviews sensor, through Dagster's sensor context: a pull request closed by a
    reviewer makes its recommendation rejected (when, by whom) — shown by the admin API's detail — and
    the rejected index is not proposed again while its evidence stands."""
    from dbarch_pipeline.defs.sensors import pull_request_reviews

    run(store, github_publisher(gh))
    number = pr_columns(store)["aaaa1111aaaa1111"][2]
    gh.close_pull(number, by="dana")
    resource = GitHubResource(token=TOKEN, repository=gh.full_name, base_url=gh.base_url,
                              seconds_between_requests=0, seconds_between_writes=0)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"store": store, "github": resource})
        result = pull_request_reviews(context)
    assert "1 rejected" in result.skip_message
    assert status_of(store, "aaaa1111aaaa1111") == ("rejected", True, "dana")
    from fastapi.testclient import TestClient

    from dbarch_pipeline.api.app import ApiConfig, create_app

    with store.connect() as conn:
        row_id = conn.execute("SELECT id FROM dbarch.optimization_log WHERE fingerprint = 'aaaa1111aaaa1111'").fetchone()[0]
    with TestClient(create_app(ApiConfig(resources=audit_resources(store_dsn=store.dsn), warm=False))) as client:
        detail = client.get(f"/admin/database/optimizations/{row_id}").json()
    assert detail["status"] == "rejected" and detail["rejected_by"] == "dana" and detail["rejected_at"]
    assert detail["pull_request"]["state"] == "closed"
    summary = run(store, github_publisher(gh))
    assert summary["opened"] == summary["reopened"] == 0 and len(gh.pulls) == 2
    assert gh.pulls[number]["state"] == "closed"


def test_bad_token_gives_a_clear_error_without_the_token_and_nothing_lost(two_recommendations, gh, store):
    run(store, github_publisher(gh, token=TOKEN), min_gain_pct=80)      # one pull request published
    before = pr_columns(store)
    wrong = "ghp_WrongTokenAlsoSecret"
    with pytest.raises(DbarchError) as err:
        run(store, github_publisher(gh, token=wrong))
    message = str(err.value)
    assert "GitHub rejected the token" in message and "401" in message and "GITHUB_TOKEN" in message
    assert wrong not in message and TOKEN not in message and wrong not in repr(err.value)
    assert pr_columns(store) == before
    assert len(gh.pulls) == 1


def test_rate_limit_stops_cleanly_and_a_rerun_finishes_without_duplicates(two_recommendations, gh, store):
    # the quota runs out after the first pull request: every request about the second one gets 403
    gh.fail(403, "API rate limit exceeded for user ID 2.", path=branch_of(PROGRESS_DDL), times=1000,
            headers={"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": str(int(datetime.now(timezone.utc).timestamp()) + 3600)})
    with pytest.raises(DbarchError) as err:
        run(store, github_publisher(gh))
    message = str(err.value)
    assert "rate limit is exhausted" in message and "0 of 5000 requests left" in message and "resets at" in message
    assert "1 before it was published and recorded" in message and TOKEN not in message
    columns = pr_columns(store)
    assert columns["aaaa1111aaaa1111"][1] == "open"
    assert columns["bbbb2222bbbb2222"] == (None,) * 5

    gh.failures.clear()
    summary = run(store, github_publisher(gh))
    assert (summary["opened"], summary["unchanged"]) == (1, 1)
    assert len(gh.pulls) == 2 and pr_columns(store)["bbbb2222bbbb2222"][1] == "open"

    # the quota exhausted from the first request on: the same clear error, the log as it was
    published = pr_columns(store)
    gh.rate_limit(after=0)
    with pytest.raises(DbarchError, match="rate limit is exhausted"):
        run(store, github_publisher(gh))
    assert pr_columns(store) == published


def test_missing_repository_and_branch_protection_are_explained(two_recommendations, gh, store):
    with pytest.raises(DbarchError, match="repository acme/nope was not found") as err:
        run(store, github_publisher(gh, repository="acme/nope"))
    assert "GITHUB_REPOSITORY" in err.value.fix

    gh.protect("dbarch/*")
    with pytest.raises(DbarchError) as err:
        run(store, github_publisher(gh))
    assert f"refused to write branch {branch_of(RECENT_DDL)}" in err.value.problem
    assert "branch protection" in err.value.fix and TOKEN not in str(err.value)
    assert all(cols == (None,) * 5 for cols in pr_columns(store).values())
    assert not gh.pulls


def test_token_stays_out_of_reprs_and_debug_logs(two_recommendations, gh, store, caplog, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    resource = GitHubResource(repository=gh.full_name, base_url=gh.base_url, seconds_between_requests=0,
                              seconds_between_writes=0)
    publisher = resource.publisher()
    assert isinstance(publisher, publish.GitHubPublisher)
    with caplog.at_level(logging.DEBUG):
        run(store, publisher)
    assert caplog.records, "PyGithub logged nothing at DEBUG"
    assert TOKEN not in caplog.text and TOKEN not in repr(resource) and TOKEN not in repr(publisher)


def test_one_pull_request_per_table(audit, gh, store):
    ev = audit["rows"][0]["evidence"]
    seed(store, [
        log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS, ddl=RECENT_DDL, confidence=0.93, gain=99.0),
        log_row(ev, fingerprint="ffff6666ffff6666", query=EVENTS_BY_TYPE, ddl=EVENTS_BY_TYPE_DDL, confidence=0.9,
                gain=70.0),
        # a second statement served by the same index: one migration, both statements in the body
        log_row(ev, fingerprint="abab7777abab7777", query=RECENT_EVENTS.replace("LIMIT $2", "LIMIT 10"),
                ddl=RECENT_DDL, confidence=0.88, gain=95.0),
        log_row(ev, fingerprint="bbbb2222bbbb2222", query=PROGRESS, ddl=PROGRESS_DDL, confidence=0.86, gain=74.0),
    ])
    summary = run(store, github_publisher(gh), per="table")
    assert summary["pull_requests"] == 2 and summary["opened"] == 2
    by_head = {pr["head"]: pr for pr in gh.pulls.values()}
    assert set(by_head) == {"dbarch/table-public.behavior_log", "dbarch/table-public.user_progress"}
    files = {p for p in gh.tree("dbarch/table-public.behavior_log") if p.startswith("migrations/")}
    assert files == {f"migrations/20260301020000_{name}.{d}.sql" for d in ("up", "down")
                     for name in ("behavior_log_user_id_timestamp_idx", "behavior_log_event_type_user_id_idx")}
    pr = by_head["dbarch/table-public.behavior_log"]
    assert pr["title"] == "dbarch: add 2 indexes on public.behavior_log"
    assert "#### Statement 2 of 2" in pr["body"] and "LIMIT 10" in pr["body"]
    columns = pr_columns(store)
    assert columns["aaaa1111aaaa1111"][:3] == columns["abab7777abab7777"][:3] == columns["ffff6666ffff6666"][:3]


# -- local git fallback ------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def demo_copy(server) -> str:
    url = fresh_database("dbarch_test_prs_demo", pg_stat_statements=False)
    with psycopg.connect(url, autocommit=True) as conn:
        demo.load(conn, demo.Scale(behavior_rows=20_000), progress=lambda m: None)
    return url


def index_state(url: str, name: str) -> bool | None:
    """None when the index does not exist, else whether it is valid."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = %s", (name,)).fetchone()
    return None if row is None else row[0]


def test_local_git_fallback_commits_a_branch_whose_migration_applies_and_reverts(
        audit, store, demo_copy, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    row = max(audit["rows"], key=lambda r: r["performance_gain"] or 0)
    seed(store, [{**row, "target": TARGET, "confidence": 0.92}])
    repo = tmp_path / "prs"
    publisher = GitHubResource(local_repo_path=str(repo), repository="acme/shop").publisher()
    assert isinstance(publisher, publish.LocalGitPublisher)

    summary = run(store, publisher)
    assert summary["opened"] == 1 and summary["publisher"] == "local-git"
    branch = branch_of(row["ddl"])
    command = summary["commands"][0]
    assert f"git -C {repo} push --set-upstream origin {branch}" in command
    assert f"git -C {repo} remote add origin https://github.com/acme/shop.git && " in command
    assert "gh pr create --repo acme/shop" in command
    assert git(repo, "log", "-1", "--format=%an <%ae>", branch) == "dbarch <dbarch@localhost>"
    message = git(repo, "log", "-1", "--format=%B", branch)
    ix = concurrent_index(row["ddl"])
    assert message.startswith(f"dbarch: add index {ix.name} on {ix.qualified_table}\n")
    assert bodies.parse_marker(message)["key"] == row["fingerprint"]
    body_file = Path(command.split("--body-file ")[1].split(" --label")[0])
    assert body_file.read_text().startswith("## dbarch: add index")
    assert sorted(p.name for p in repo.iterdir()) == [".git"], "the working tree must stay untouched"
    files = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    up = next(f for f in files if f.endswith(".up.sql"))
    down = next(f for f in files if f.endswith(".down.sql"))
    assert pr_columns(store)[row["fingerprint"]][1:] == ("local", None, branch,
                                                        bodies.parse_marker(message)["evidence"])

    # the branch's migration, as a reviewer would run it: on its own, outside a transaction
    assert index_state(demo_copy, ix.name) is None
    with psycopg.connect(demo_copy, autocommit=True) as conn:
        conn.execute(git(repo, "show", f"{branch}:{up}"))
    assert index_state(demo_copy, ix.name) is True
    with psycopg.connect(demo_copy, autocommit=True) as conn:
        conn.execute(git(repo, "show", f"{branch}:{up}"))          # IF NOT EXISTS: re-running is harmless
        conn.execute(git(repo, "show", f"{branch}:{down}"))
    assert index_state(demo_copy, ix.name) is None
    # inside a transaction it must fail, which is why the file says so
    with psycopg.connect(demo_copy) as conn, pytest.raises(psycopg.errors.ActiveSqlTransaction):
        conn.execute(git(repo, "show", f"{branch}:{up}"))

    tip = git(repo, "rev-parse", branch)
    assert run(store, publisher)["unchanged"] == 1 and git(repo, "rev-parse", branch) == tip


def test_local_git_update_commits_on_top_and_removes_superseded_files(audit, store, tmp_path):
    ev = audit["rows"][0]["evidence"]
    seed(store, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS, ddl=RECENT_DDL,
                         confidence=0.93, gain=99.0)])
    repo = tmp_path / "prs"
    publisher = publish.LocalGitPublisher(repo)
    assert run(store, publisher)["opened"] == 1
    first = git(repo, "rev-parse", branch_of(RECENT_DDL))
    # the same index measured again within the clock's noise: the branch is not rewritten
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=RECENT_DDL, confidence=0.95, gain=97.0)])
    assert run(store, publisher)["unchanged"] == 1
    assert git(repo, "rev-parse", branch_of(RECENT_DDL)) == first
    # a material change (the gain fell by 10 points or more): a commit on top of the first
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=RECENT_DDL, confidence=0.95, gain=80.0)])
    assert run(store, publisher)["updated"] == 1
    assert git(repo, "rev-parse", f"{branch_of(RECENT_DDL)}~1") == first
    # a later audit prefers another index for the same statement: its own branch; the old row is
    # superseded and its branch (only dbarch's commits) removed, with its saved body
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=EVENTS_BY_TYPE_DDL, confidence=0.95, gain=99.5)],
                                      evaluated=["aaaa1111aaaa1111"])
    summary = run(store, publisher)
    assert summary["opened"] == 1 and summary["closed_superseded"] == [f"{repo.as_uri()}#{branch_of(RECENT_DDL)}"]
    assert branch_of(RECENT_DDL) not in git(repo, "branch", "--format=%(refname:short)").split()
    assert not list((repo / ".git" / "dbarch").glob("*user_id_timestamp*"))
    files = git(repo, "ls-tree", "-r", "--name-only", branch_of(EVENTS_BY_TYPE_DDL)).splitlines()
    assert files and all("event_type_user_id" in f for f in files)
    with store.connect() as conn:
        states = dict(conn.execute("SELECT ddl, pr_state FROM dbarch.optimization_log").fetchall())
    assert states == {RECENT_DDL: "closed", EVENTS_BY_TYPE_DDL: "local"}
    assert run(store, publisher)["closed_superseded"] == []          # done once


def test_local_branch_someone_committed_to_is_kept_when_superseded(audit, store, tmp_path):
    ev = audit["rows"][0]["evidence"]
    seed(store, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS, ddl=RECENT_DDL,
                         confidence=0.93, gain=99.0)])
    repo = tmp_path / "prs"
    publisher = publish.LocalGitPublisher(repo)
    assert run(store, publisher)["opened"] == 1
    branch = branch_of(RECENT_DDL)
    tip = git(repo, "rev-parse", branch)
    tree = git(repo, "rev-parse", f"{tip}^{{tree}}")
    env = {"GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    mine = subprocess.run(["git", "-C", str(repo), "commit-tree", tree, "-p", tip, "-m", "review tweak"],
                          check=True, capture_output=True, text=True, env={**__import__("os").environ, **env}).stdout.strip()
    git(repo, "update-ref", f"refs/heads/{branch}", mine)
    with store.connect() as conn:
        memory.write_optimization_log(conn, [log_row(ev, fingerprint="aaaa1111aaaa1111", query=RECENT_EVENTS,
                                                     ddl=EVENTS_BY_TYPE_DDL, confidence=0.95, gain=99.5)],
                                      evaluated=["aaaa1111aaaa1111"])
    summary = run(store, publisher)
    assert summary["opened"] == 1 and summary["closed_superseded"] == []
    assert git(repo, "rev-parse", branch) == mine


def test_alembic_migration_runs_outside_a_transaction_and_downgrades(demo_copy, tmp_path):
    from alembic import command
    from alembic.config import Config

    ix = concurrent_index(PROGRESS_DDL)
    [revision] = render(ix, MigrationLayout("alembic"), fingerprint="bbbb2222bbbb2222", created_at=CREATED)
    assert revision.path.startswith("alembic/versions/")
    assert revision.path.endswith("_user_progress_user_id_lesson_id_idx.py")
    tree = ast.parse(revision.content)
    upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")
    assert "autocommit_block" in ast.unparse(upgrade) and ix.create in ast.unparse(upgrade)
    assert "transaction" in revision.content and "down_revision = None" in revision.content

    scripts = tmp_path / "alembic"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "versions" / Path(revision.path).name).write_text(revision.content)
    (scripts / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import create_engine\n"
        "engine = create_engine(context.config.get_main_option('sqlalchemy.url'))\n"
        "with engine.connect() as connection:\n"
        "    context.configure(connection=connection)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n")
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", demo_copy.replace("postgresql://", "postgresql+psycopg://", 1))
    command.upgrade(config, "head")
    assert index_state(demo_copy, ix.name) is True
    command.downgrade(config, "base")
    assert index_state(demo_copy, ix.name) is None


# -- templates and the DDL rewrite -------------------------------------------------------------------

def test_prisma_and_custom_layouts_render_as_their_tools_expect():
    ix = concurrent_index(RECENT_DDL)
    up, down = render(ix, MigrationLayout("prisma"), fingerprint="aaaa1111aaaa1111", created_at=CREATED)
    assert up.path == "prisma/migrations/20260301020000_behavior_log_user_id_timestamp_idx/migration.sql"
    assert down.path == "prisma/migrations/20260301020000_behavior_log_user_id_timestamp_idx/down.sql"
    statements = [line for line in up.content.splitlines() if line and not line.startswith("--")]
    assert statements == [f"{ix.create};"]
    assert "implicit transaction" in up.content and "25001" in up.content and "schema.prisma" in up.content

    flyway_like = MigrationLayout("sql", directory="db/migrate/",
                                  filename="V{timestamp}__{fingerprint}_{direction}.sql")
    files = render(ix, flyway_like, fingerprint="aaaa1111aaaa1111", created_at=CREATED)
    assert [f.path for f in files] == ["db/migrate/V20260301020000__aaaa1111aaaa1111_up.sql",
                                       "db/migrate/V20260301020000__aaaa1111aaaa1111_down.sql"]
    for layout, problem in ((MigrationLayout("sql", filename="{timestamp}_{index_name}.sql"), "no {direction}"),
                            (MigrationLayout("flyway"), "unknown migration template"),
                            (MigrationLayout("sql", filename="{when}_{index_name}.{direction}.sql"),
                             "unknown placeholders"),
                            (MigrationLayout("sql", directory="../elsewhere"), "outside the repository")):
        with pytest.raises(DbarchError, match=re.escape(problem)):
            layout.validate()


@pytest.mark.parametrize("ddl, create", [
    (RECENT_DDL, 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "behavior_log_user_id_timestamp_idx" ON '
                 '"public"."behavior_log" ("user_id", "timestamp")'),
    ('CREATE INDEX "users_lower_email_idx" ON "public"."users" ((lower("email")))',
     'CREATE INDEX CONCURRENTLY IF NOT EXISTS "users_lower_email_idx" ON "public"."users" ((lower("email")))'),
    ('CREATE INDEX "u_e_idx" ON "app"."users" USING gin ("name" jsonb_path_ops) WHERE "plan" = \'pro\'',
     'CREATE INDEX CONCURRENTLY IF NOT EXISTS "u_e_idx" ON "app"."users" USING gin ("name" jsonb_path_ops) '
     'WHERE "plan" = \'pro\''),
])
def test_logged_ddl_becomes_concurrent(ddl, create):
    ix = concurrent_index(ddl)
    assert ix.create == create
    assert ix.drop == f'DROP INDEX CONCURRENTLY IF EXISTS "{ix.schema}"."{ix.name}"'


@pytest.mark.parametrize("ddl", [
    'CREATE UNIQUE INDEX "u" ON "public"."users" ("email")',
    'CREATE INDEX "x" ON "public"."t" ("a"); DROP TABLE "public"."t"',
    'CREATE INDEX "x" ON "t" ("a")',
    'DROP INDEX "public"."x"',
])
def test_unsupported_ddl_is_refused(ddl):
    with pytest.raises(UnsupportedDDL):
        concurrent_index(ddl)


def test_asset_is_downstream_of_the_log_in_the_weekly_audit_group():
    spec = optimization_pull_requests
    assert spec.group_names_by_key[dg.AssetKey("optimization_pull_requests")] == "weekly_audit"
    assert dg.AssetKey("optimization_log") in spec.asset_deps[dg.AssetKey("optimization_pull_requests")]
    assert "github" in spec.specs_by_key[dg.AssetKey("optimization_pull_requests")].kinds
