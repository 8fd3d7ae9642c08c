"""Retrieval: the few tables, examples and documentation chunks a question needs.

Large schemas do not fit in a prompt, so each question gets only:
- the k tables with the best score: cosine similarity of the question to the table's description
  (pgvector), plus a keyword score for words of the question found in the table's name, columns and
  common values, weighted by how rare the word is across tables (a word every table has counts 0);
- then the tables those reference through foreign keys (to join for names) and the tables that
  link two chosen ones (user_progress between users and lessons), up to max_tables;
- the nearest question-SQL examples and documentation chunks (HNSW, cosine).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import psycopg
from psycopg.rows import dict_row

from ..db import named
from ..memory.embeddings import Embedder

# Column-name words too common to say anything about which table a question needs.
GENERIC_WORDS = {"id", "at", "created", "updated", "name", "title", "type", "s", "of", "the", "a", "in"}
KEYWORD_WEIGHT = 0.1
NAME_WEIGHT, VALUE_WEIGHT, COLUMN_WEIGHT = 1.0, 0.7, 0.5


@dataclass(frozen=True)
class RetrievalSettings:
    k_tables: int = 3
    max_tables: int = 8
    k_examples: int = 3
    k_docs: int = 2
    expand: bool = True          # add referenced and linking tables
    keyword_weight: float = KEYWORD_WEIGHT   # 0: similarity alone


@dataclass
class Retrieved:
    tables: list[dict] = field(default_factory=list)     # key, content, metadata, score, similarity, why
    examples: list[dict] = field(default_factory=list)   # key, content, metadata, similarity
    docs: list[dict] = field(default_factory=list)
    vector: np.ndarray | None = None

    @property
    def table_names(self) -> list[str]:
        return [t["key"] for t in self.tables]


def retrieve(store_conn: psycopg.Connection, embedder: Embedder, question: str, *, target: str,
             settings: RetrievalSettings = RetrievalSettings()) -> Retrieved:
    vector = embedder.embed_one(question)
    out = Retrieved(vector=vector)
    with store_conn.transaction():
        _exact_filtered_search(store_conn)
        with store_conn.cursor(row_factory=dict_row) as cur:
            tables = cur.execute(named("ask_select_table_documents"),
                                 {"embedding": vector, "target": target}).fetchall()
            out.examples = nearest(cur, vector, target=target, kind="example", limit=settings.k_examples)
            out.docs = nearest(cur, vector, target=target, kind="doc", limit=settings.k_docs)
    out.tables = choose_tables(question, tables, settings)
    return out


def nearest(cur: psycopg.Cursor, vector: np.ndarray, *, target: str, kind: str, limit: int) -> list[dict]:
    if limit <= 0:
        return []
    # never prepared: a generic plan cannot use the HNSW index for this probe's distance
    rows = cur.execute(named("ask_select_nearest_documents"),
                       {"embedding": vector, "target": target, "kind": kind, "limit": limit},
                       prepare=False).fetchall()
    for r in rows:
        r["similarity"] = round(float(r["similarity"]), 4)
    return rows


def _exact_filtered_search(conn: psycopg.Connection) -> None:
    """HNSW returns its nearest candidates before the target/kind filter; with pgvector >= 0.8 an
    iterative scan keeps searching until `limit` rows pass the filter. Older pgvector lacks the
    setting: the savepoint lets the query run without it."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
    except psycopg.Error:
        pass


def choose_tables(question: str, tables: Sequence[dict], settings: RetrievalSettings) -> list[dict]:
    """Score every table, keep the k best, then add referenced and linking tables."""
    if not tables:
        return []
    terms = [_table_terms(t["metadata"]) for t in tables]
    df: dict[str, int] = {}
    for table_terms in terms:
        for term in table_terms:
            df[term] = df.get(term, 0) + 1
    n = len(tables)
    asked = question_terms(question)
    scored = []
    for t, table_terms in zip(tables, terms):
        matched = {term: w for term, w in table_terms.items() if term in asked}
        # a word found in every table tells nothing (idf 0); a rare one tells a lot
        keyword = sum(w * math.log(n / df[term]) for term, w in matched.items())
        similarity = float(t["similarity"])
        scored.append({**t, "similarity": round(similarity, 4), "keyword": round(keyword, 3),
                       "score": round(similarity + settings.keyword_weight * keyword, 4), "matched": sorted(matched)})
    scored.sort(key=lambda t: -t["score"])

    chosen = scored[: settings.k_tables]
    for t in chosen:
        t["why"] = f"score {t['score']:.3f} (similarity {t['similarity']:.3f}" + (
            f", words {', '.join(t['matched'])})" if t["matched"] else ")")
    if not settings.expand:
        return chosen
    by_key = {t["key"]: t for t in scored}
    keys = {t["key"] for t in chosen}

    def add(key: str, why: str) -> None:
        if key in by_key and key not in keys and len(chosen) < settings.max_tables:
            chosen.append({**by_key[key], "why": why})
            keys.add(key)

    # tables that link two chosen ones (both are referenced by it), best scored first
    for t in scored:
        refs = [r for r in t["metadata"].get("references", []) if r in keys]
        if t["key"] not in keys and len(set(refs)) >= 2:
            add(t["key"], f"links {' and '.join(sorted(set(refs)))}")
    # what the chosen tables reference (names, categories to join to)
    for t in list(chosen):
        for ref in t["metadata"].get("references", []):
            add(ref, f"referenced by {t['key']}")
    return chosen


def _table_terms(meta: dict) -> dict[str, float]:
    """word -> weight: the table's name words, its common values, its column names."""
    terms: dict[str, float] = {}

    def put(words: set[str], weight: float) -> None:
        for w in words - GENERIC_WORDS:
            terms[w] = max(terms.get(w, 0.0), weight)

    for column in meta.get("columns", []):
        put(_terms(column), COLUMN_WEIGHT)
    for values in list(meta.get("values", {}).values()) + list(meta.get("json_keys", {}).values()):
        for value in values:
            put(_terms(value), VALUE_WEIGHT)
    put(_terms(meta.get("table", "")), NAME_WEIGHT)
    return terms


def question_terms(question: str) -> set[str]:
    return _terms(question)


def _terms(text: str) -> set[str]:
    return {_singular(w) for w in re.findall(r"[a-z0-9]+", str(text).lower()) if len(w) > 1}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
