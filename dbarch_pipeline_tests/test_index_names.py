"""Candidate index names never collide with a relation of the target: a taken name gets a
deterministic suffix (the same on every run), and the candidate is measured, not lost as
"benchmark failed"."""

from __future__ import annotations

import doctest
import random

import psycopg

from dbarch_pipeline import demo, report
from dbarch_pipeline.advisor.candidates import index_name
from dbarch_pipeline.bench import naming
from dbarch_pipeline.bench.naming import assign_names
from dbarch_pipeline.db import database_name
from dbarch_pipeline.models import IndexCandidate
from dbarch_pipeline.run import audit_resources, materialize_audit

from .conftest import FAST_SETTINGS, fresh_database


def test_doctests():
    assert doctest.testmod(naming).failed == 0


def test_generated_names_are_free_distinct_and_stable():
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    for _ in range(50):
        cands = [IndexCandidate("s", rng.choice(["t", "a" * 60]), tuple(rng.sample(["x", "y", "lower(x)", "x_y"],
                                                                                  rng.randint(1, 2))), "r")
                 for _ in range(rng.randint(1, 8))]
        taken = {("s", index_name(c)) for c in cands if rng.random() < 0.5} | {("s", "t_x_idx_other")}
        named = assign_names(cands, taken)
        by_definition: dict[str, str] = {}
        for cand in named:
            name = index_name(cand)
            assert len(name) <= 63 and ("s", name) not in taken, (seed, name)
            assert by_definition.setdefault(cand.label(), name) == name, seed   # same index, same name
        assert len(set(by_definition.values())) == len(by_definition), seed   # different ones differ
        assert [index_name(c) for c in assign_names(cands, taken)] == [index_name(c) for c in named], seed


def test_a_candidate_whose_name_is_taken_is_measured(server, store_dsn):
    url = fresh_database("dbarch_test_names")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "region int NOT NULL, note text NOT NULL)")
        conn.execute("INSERT INTO accounts (region, note) SELECT g % 3000, md5(g::text) FROM generate_series(1, 40000) g")
        # the name the advisor would give its candidate is taken by another index and by nothing else
        conn.execute("CREATE INDEX accounts_region_idx ON accounts (note)")
        conn.execute("VACUUM ANALYZE accounts")
        demo.reset_statistics(conn)
        for region in range(6):
            conn.execute("SELECT count(*) FROM accounts WHERE region = %s", (region,))
        conn.execute("SELECT pg_stat_force_next_flush()")
    resources = audit_resources(target_dsn=url, store_dsn=store_dsn, settings={**FAST_SETTINGS, "min_mean_ms": 0.2})
    assert materialize_audit(resources).success
    with psycopg.connect(store_dsn) as conn:
        data = report.audit_result(conn, target=database_name(url), settings=resources["audit_settings"].settings())
    ddls = [r["ddl"] for r in data["recommendations"]]
    assert len(ddls) == 1 and '"accounts_region_idx_' in ddls[0] and '("region")' in ddls[0], data
    assert not [d for d in data["declined"] if "already exists" in d["reason"]]
