"""Benchmark: how well `dbarch ask` retrieval puts the needed tables in the prompt (no Gemini needed).

Loads the demo learning platform (Scale(behavior_rows=N), N=60,000 by default) into a fresh
`dbarch_bench_ask_target`, builds the ask corpus (tables from the catalog plus the suite's training
examples) in a fresh store `dbarch_bench_ask_store`, then for every question of
dbarch_pipeline_tests/ask_suite.yaml runs retrieval exactly as `ask` does and renders the prompt.
Table recall = needed tables whose CREATE TABLE appears in the prompt / needed tables, over the
suite. Printed for k (tables chosen by score) in 2, 3, 5, three ways: similarity alone; similarity
plus keywords; and what `ask` uses (similarity plus keywords, then referenced and linking tables).
Also the mean number of tables and characters per prompt, and the questions whose tables were missed.
Asserts nothing. Both databases are dropped at the end.

Run alone: .venv/bin/python benchmarks/bench_ask_retrieval.py [--rows 60000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import psycopg  # noqa: E402
import yaml  # noqa: E402

from dbarch_pipeline.embedded import drop_database, recreate_database as fresh_database  # noqa: E402
from dbarch_pipeline import demo, embedded  # noqa: E402
from dbarch_pipeline.ask.answer import build_prompt  # noqa: E402
from dbarch_pipeline.ask.corpus import refresh_corpus  # noqa: E402
from dbarch_pipeline.ask.retrieve import RetrievalSettings, retrieve  # noqa: E402
from dbarch_pipeline.db import connect  # noqa: E402
from dbarch_pipeline.memory import store  # noqa: E402
from dbarch_pipeline.memory.embeddings import Embedder  # noqa: E402

SUITE = Path(__file__).resolve().parents[1] / "dbarch_pipeline_tests" / "ask_suite.yaml"
TARGET_DB = "dbarch_bench_ask_target"
STORE_DB = "dbarch_bench_ask_store"
TARGET_NAME = "bench_ask"






def tables_in_prompt(prompt: str, tables: list[str], schema: str = "public") -> list[str]:
    """The needed tables whose definition the prompt shows."""
    return [t for t in tables if f"CREATE TABLE {schema}.{t} (" in prompt]


def measure(store_conn: psycopg.Connection, embedder: Embedder, questions: list[dict],
            settings: RetrievalSettings) -> dict:
    needed = found = 0
    sizes, counts, missed = [], [], []
    for q in questions:
        retrieved = retrieve(store_conn, embedder, q["question"], target=TARGET_NAME, settings=settings)
        prompt = build_prompt(q["question"], retrieved)
        present = tables_in_prompt(prompt, q["tables"])
        needed += len(q["tables"])
        found += len(present)
        sizes.append(len(prompt))
        counts.append(len(retrieved.tables))
        if len(present) < len(q["tables"]):
            missed.append((q["id"], sorted(set(q["tables"]) - set(present))))
    return {"recall": found / needed, "needed": needed, "found": found, "mean_tables": statistics.fmean(counts),
            "mean_chars": statistics.fmean(sizes), "max_chars": max(sizes), "missed": missed}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="behavior_log rows of the demo")
    args = parser.parse_args(argv)
    suite = yaml.safe_load(SUITE.read_text())
    questions = suite["questions"]
    embedded.start()
    results: dict = {}
    try:
        target_url, store_url = fresh_database(TARGET_DB), fresh_database(STORE_DB)
        t0 = time.perf_counter()
        with connect(target_url, "target") as t:
            demo.load(t, demo.Scale(behavior_rows=args.rows), progress=lambda _m: None)
        print(f"== Ask retrieval: {len(questions)} questions of {SUITE.name} over the demo "
              f"({args.rows:,} behaviour rows, loaded in {time.perf_counter() - t0:.1f}s) ==")
        embedder = Embedder()
        with connect(target_url, "target") as t, connect(store_url, "store") as s:
            store.ensure_schema(s)
            t0 = time.perf_counter()
            corpus = refresh_corpus(t, s, embedder, target=TARGET_NAME, examples=SUITE)
            print(f"corpus: {corpus['tables']} tables, {corpus['examples']} examples, embedded in "
                  f"{time.perf_counter() - t0:.1f}s (includes the model load)")
            variants = [("similarity only", dict(keyword_weight=0.0, expand=False)),
                        ("similarity + keywords", dict(expand=False)),
                        ("as ask: + referenced/linking tables", dict())]
            print(f"{'k':>2}  {'retrieval':<38} {'recall':>7} {'tables/prompt':>14} {'chars/prompt':>13}  missed")
            for k in (2, 3, 5):
                for label, options in variants:
                    r = measure(s, embedder, questions, RetrievalSettings(k_tables=k, **options))
                    results[(k, label)] = r
                    missed = ", ".join(f"{qid} ({'/'.join(ts)})" for qid, ts in r["missed"]) or "-"
                    print(f"{k:>2}  {label:<38} {r['recall']:7.3f} {r['mean_tables']:14.1f} "
                          f"{r['mean_chars']:13,.0f}  {missed}")
            default = RetrievalSettings()
            r = results[(default.k_tables, "as ask: + referenced/linking tables")]
            print(f"ask's default (k={default.k_tables}, max {default.max_tables} tables): table recall "
                  f"{r['recall']:.3f} ({r['found']}/{r['needed']}), mean prompt {r['mean_chars']:,.0f} chars "
                  f"(max {r['max_chars']:,})")
    finally:
        drop_database(TARGET_DB)
        drop_database(STORE_DB)
    return results


if __name__ == "__main__":
    main()
