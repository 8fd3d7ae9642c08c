"""The training corpus of `dbarch ask`: what Gemini may see about a target, embedded into pgvector.

Three kinds of documents, one row each in `dbarch.ask_document`:
- table: one per table or view of the allowed schemas, read from the target's catalog. The prompt
  text is a CREATE TABLE with types, NOT NULL, keys, foreign keys, indexes and the row estimate;
  low-cardinality text columns show their common values (from pg_stats) and jsonb columns the keys
  found in a small sample, so that questions naming a value ("page views", "pro users") find the
  table and the SQL uses the right literal. Unique values (emails, names) never appear.
- doc: chunks of the documentation files the user points to (split at headings and paragraphs).
- example: question-SQL pairs, from the user's YAML/JSON file or confirmed by use (`ask --confirm`);
  each SQL must pass the read-only validation to be kept.

A refresh re-embeds only documents whose content hash changed and deletes those a source no longer
produces, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import psycopg
import yaml
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..db import named, tag
from ..errors import DbarchError
from ..llm.validate import Rejection, read_only, validate_read_only_select
from ..memory.embeddings import Embedder

CATALOG_SOURCE = "catalog"
CONFIRMED_SOURCE = "confirmed"
MAX_VALUES = 12           # common values shown per column
MAX_DISTINCT = 50         # columns with more distinct values are not categorical
JSON_SAMPLE_ROWS = 200
MAX_JSON_KEYS = 15
CHUNK_CHARS = 1_200
CATALOG_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Document:
    kind: str            # table | doc | example
    key: str
    source: str          # catalog | a file path | confirmed
    content: str         # what the prompt shows
    embed_text: str      # what is embedded (plain words match questions better than DDL)
    metadata: dict

    def content_hash(self, model: str) -> str:
        return hashlib.sha256("\x00".join([model, self.embed_text, self.content]).encode()).hexdigest()[:32]


# -- tables, from the catalog --------------------------------------------------------------------

def table_documents(conn: psycopg.Connection, schemas: Sequence[str] = ("public",)) -> list[Document]:
    """One document per table or view of `schemas`, read in a read-only transaction."""
    with read_only(conn, statement_timeout_ms=CATALOG_TIMEOUT_MS):
        with conn.cursor(row_factory=dict_row) as cur:
            tables = cur.execute(named("ask_select_catalog_tables"), {"schemas": list(schemas)}).fetchall()
            value_rows = cur.execute(named("ask_select_column_values"), {
                "schemas": list(schemas), "max_values": MAX_VALUES, "max_distinct": MAX_DISTINCT}).fetchall()
            json_rows = cur.execute(named("ask_select_jsonb_columns"), {"schemas": list(schemas)}).fetchall()
        values: dict[tuple[str, str], dict[str, list[str]]] = {}
        for r in value_rows:
            values.setdefault((r["schema"], r["table"]), {})[r["column"]] = list(r["vals"] or [])
        json_keys: dict[tuple[str, str], dict[str, list[str]]] = {}
        for r in json_rows:
            keys = _sample_json_keys(conn, r["schema"], r["table"], r["column"])
            if keys:
                json_keys.setdefault((r["schema"], r["table"]), {})[r["column"]] = keys
    return [_table_document(t, values.get((t["schema"], t["table"]), {}),
                            json_keys.get((t["schema"], t["table"]), {})) for t in tables]


def _sample_json_keys(conn: psycopg.Connection, schema: str, table: str, column: str) -> list[str]:
    col = sql.Identifier(column)
    query = sql.SQL(tag(
        "SELECT k FROM (SELECT jsonb_object_keys({col}) AS k FROM (SELECT {col} FROM {tbl} "
        "WHERE jsonb_typeof({col}) = 'object' LIMIT {rows}) s) keys GROUP BY k ORDER BY count(*) DESC, k "
        "LIMIT {keys}")).format(col=col, tbl=sql.Identifier(schema, table),
                               rows=sql.Literal(JSON_SAMPLE_ROWS), keys=sql.Literal(MAX_JSON_KEYS))
    try:
        with conn.transaction():   # a savepoint: a table we may not read costs only its keys
            return [r[0] for r in conn.execute(query)]
    except psycopg.Error:
        return []


def _table_document(t: dict, values: dict[str, list[str]], json_keys: dict[str, list[str]]) -> Document:
    schema, table = t["schema"], t["table"]
    qualified = f"{schema}.{table}"
    refs: dict[str, str] = {}          # column -> referenced schema.table (single-column keys)
    references: list[str] = []
    constraint_lines = []
    for con in t["constraints"]:
        constraint_lines.append(con["definition"])
        if con["type"] == "f" and con.get("ref_table"):
            ref = f"{con['ref_schema']}.{con['ref_table']}"
            if ref not in references:
                references.append(ref)
            if len(con.get("columns") or []) == 1:
                refs[con["columns"][0]] = ref

    what = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}.get(t["kind"], "TABLE")
    size = f"about {t['row_estimate']:,} rows" if t["kind"] in ("r", "p", "m") else what.lower()
    lines = [f"-- {qualified}: {size}" + (f"; {t['comment']}" if t["comment"] else ""),
             f"CREATE {what} {qualified} ("]
    body = []
    for c in t["columns"]:
        line = f"    {_ident(c['name'])} {c['type']}" + (" NOT NULL" if c["not_null"] else "")
        notes = []
        if c["name"] in refs:
            notes.append(f"references {refs[c['name']]}")
        if c["name"] in values:
            notes.append("values: " + ", ".join(f"'{v}'" for v in values[c["name"]]))
        if c["name"] in json_keys:
            notes.append("keys: " + ", ".join(json_keys[c["name"]]))
        if c.get("comment"):
            notes.append(c["comment"])
        body.append((line, notes))
    body += [(f"    {definition}", []) for definition in constraint_lines]
    for i, (line, notes) in enumerate(body):
        comma = "," if i < len(body) - 1 else ""
        lines.append(line + comma + (f"  -- {'; '.join(notes)}" if notes else ""))
    lines.append(");")
    lines += [f"-- {ix}" for ix in t["indexes"]]

    columns = [c["name"] for c in t["columns"]]
    described = []
    for c in t["columns"]:
        words = _words(c["name"])
        if c["name"] in refs:
            words += f" of {_words(refs[c['name']].split('.', 1)[1])}"
        if c["name"] in values:
            words += " (" + ", ".join(_words(v) for v in values[c["name"]]) + ")"
        if c["name"] in json_keys:
            words += " with " + ", ".join(_words(k) for k in json_keys[c["name"]])
        described.append(words)
    embed_text = (f"{_words(table)} {what.lower()} ({table}), {size}"
                  + (f". {t['comment']}" if t["comment"] else "") + ". columns: " + ", ".join(described))
    metadata = {"schema": schema, "table": table, "qualified": qualified, "kind": t["kind"],
                "columns": columns, "references": references, "values": values, "json_keys": json_keys,
                "row_estimate": t["row_estimate"]}
    return Document("table", qualified, CATALOG_SOURCE, "\n".join(lines), embed_text, metadata)


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in _RESERVED else f'"{name}"'


# Words that must be quoted as column names (enough for readable DDL, not a full keyword list).
_RESERVED = {"timestamp", "user", "order", "group", "table", "select", "from", "where", "limit", "offset",
             "position", "default", "check", "column", "references", "primary", "key", "all", "end"}


def _words(name: str) -> str:
    return re.sub(r"[_\W]+", " ", str(name)).strip()


# -- documentation files ---------------------------------------------------------------------------

def doc_documents(paths: Sequence[str | Path]) -> tuple[list[Document], list[str]]:
    """(chunks of the files, the sources: each file's resolved path)."""
    docs: list[Document] = []
    sources: list[str] = []
    for path in paths:
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise DbarchError(f"documentation file {path} not found",
                              "pass existing markdown or text files to --docs")
        sources.append(str(p))
        for i, (heading, chunk) in enumerate(split_text(p.read_text(errors="replace"))):
            docs.append(Document("doc", f"{p}#{i}", str(p), chunk, chunk,
                                 {"path": str(p), "heading": heading, "chunk": i}))
    return docs, sources


def split_text(text: str, max_chars: int = CHUNK_CHARS) -> list[tuple[str, str]]:
    """(heading, chunk) pairs: sections at markdown headings, paragraphs packed up to max_chars;
    every chunk starts with its section's heading so that it reads on its own.

    >>> [h for h, _ in split_text("# A\\none\\n\\n## B\\ntwo")]
    ['A', 'B']
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)", line)
        if m:
            sections.append((m.group(1).strip(), []))
        else:
            sections[-1][1].append(line)
    chunks: list[tuple[str, str]] = []
    for heading, lines in sections:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
        prefix = f"{heading}\n" if heading else ""
        current = ""
        for para in paragraphs:
            while len(para) > max_chars:        # a paragraph too long for one chunk is cut
                if current:
                    chunks.append((heading, prefix + current))
                    current = ""
                chunks.append((heading, prefix + para[:max_chars]))
                para = para[max_chars:]
            if current and len(current) + len(para) + 2 > max_chars:
                chunks.append((heading, prefix + current))
                current = ""
            current = f"{current}\n\n{para}" if current else para
        if current:
            chunks.append((heading, prefix + current))
    return chunks


# -- question-SQL examples ---------------------------------------------------------------------------

def load_examples(path: str | Path) -> list[dict]:
    """Pairs from a YAML or JSON file: a list of {question, sql}, or {"examples": [...]}."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DbarchError(f"examples file {path} not found",
                          "pass a YAML or JSON file of {question, sql} pairs to --examples")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise DbarchError(f"examples file {path} is neither YAML nor JSON: {exc}",
                          "write a list of entries with `question:` and `sql:`") from None
    if isinstance(data, dict):
        data = data.get("examples")
    if not isinstance(data, list) or not all(isinstance(d, dict) and d.get("question") and d.get("sql")
                                             for d in data):
        raise DbarchError(f"examples file {path} must hold a list of {{question, sql}} entries",
                          "write entries like `- question: How many users?` / `  sql: SELECT count(*) FROM users`")
    return [{"question": str(d["question"]).strip(), "sql": str(d["sql"]).strip()} for d in data]


def example_key(question: str) -> str:
    return hashlib.sha256(" ".join(question.lower().split()).encode()).hexdigest()[:16]


def example_documents(pairs: Sequence[dict], source: str, schemas: Sequence[str] | None = ("public",)
                      ) -> tuple[list[Document], list[dict]]:
    """(documents, skipped with the reason): an example whose SQL is not a safe SELECT is not kept."""
    docs: dict[str, Document] = {}
    skipped: list[dict] = []
    for pair in pairs:
        checked = validate_read_only_select(pair["sql"], schemas, allow_params=False)
        if isinstance(checked, Rejection):
            skipped.append({"question": pair["question"], "reason": checked.reason})
            continue
        key = example_key(pair["question"])
        docs[key] = Document("example", key, source, f"Question: {pair['question']}\nSQL: {checked.sql}",
                             pair["question"], {"question": pair["question"], "sql": checked.sql,
                                                "tables": list(checked.tables)})
    return list(docs.values()), skipped


# -- the store -------------------------------------------------------------------------------------

def sync_documents(store_conn: psycopg.Connection, embedder: Embedder, *, target: str, kind: str,
                   sources: Sequence[str], documents: Sequence[Document]) -> dict[str, int]:
    """Make the stored documents of `sources` exactly `documents`; embed only what changed."""
    model = embedder.name
    existing = {r[0]: r[2] for r in store_conn.execute(named("ask_select_document_hashes"),
                                                       {"target": target, "kind": kind})}
    unique = {d.key: d for d in documents}
    changed = [d for d in unique.values() if existing.get(d.key) != d.content_hash(model)]
    vectors = embedder.embed([d.embed_text for d in changed])
    with store_conn.transaction():
        deleted = store_conn.execute(named("ask_delete_documents"), {
            "target": target, "kind": kind, "sources": list(sources), "keep": list(unique)}).rowcount
        with store_conn.cursor() as cur:
            cur.executemany(named("ask_upsert_document"), [
                {"target": target, "kind": kind, "key": d.key, "source": d.source, "content": d.content,
                 "content_hash": d.content_hash(model), "metadata": Jsonb(d.metadata, dumps=_dumps),
                 "model": model, "embedding": vector}
                for d, vector in zip(changed, vectors)])
    return {"embedded": len(changed), "unchanged": len(unique) - len(changed), "deleted": max(deleted, 0)}


def refresh_corpus(target_conn: psycopg.Connection, store_conn: psycopg.Connection, embedder: Embedder, *,
                   target: str, schemas: Sequence[str] = ("public",), docs: Sequence[str | Path] = (),
                   examples: str | Path | None = None) -> dict[str, Any]:
    """Bring the corpus of `target` up to date: tables always, docs and examples when given."""
    totals = {"embedded": 0, "unchanged": 0, "deleted": 0}

    def add(result: dict[str, int]) -> None:
        for k in totals:
            totals[k] += result[k]

    tables = table_documents(target_conn, schemas)
    add(sync_documents(store_conn, embedder, target=target, kind="table", sources=[CATALOG_SOURCE],
                       documents=tables))
    skipped: list[dict] = []
    if docs:
        chunks, sources = doc_documents(docs)
        add(sync_documents(store_conn, embedder, target=target, kind="doc", sources=sources, documents=chunks))
    if examples:
        source = str(Path(examples).expanduser().resolve())
        pairs, skipped = example_documents(load_examples(examples), source, schemas)
        add(sync_documents(store_conn, embedder, target=target, kind="example", sources=[source],
                           documents=pairs))
    with store_conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(named("ask_count_documents"), {"target": target}).fetchone()
    return {**counts, **totals, "skipped_examples": skipped}


def confirm_example(store_conn: psycopg.Connection, embedder: Embedder, *, target: str, question: str,
                    sql_text: str, schemas: Sequence[str] | None = ("public",)) -> Document:
    """Keep a question-SQL pair that answered well as an example (source 'confirmed')."""
    docs, skipped = example_documents([{"question": question, "sql": sql_text}], CONFIRMED_SOURCE, schemas)
    if skipped:
        raise DbarchError(f"cannot keep this example: {skipped[0]['reason']}",
                          "only a read-only SELECT over the allowed schemas can become an example")
    doc = docs[0]
    vector = embedder.embed([doc.embed_text])[0]
    with store_conn.transaction():
        store_conn.execute(named("ask_upsert_document"), {
            "target": target, "kind": "example", "key": doc.key, "source": doc.source, "content": doc.content,
            "content_hash": doc.content_hash(embedder.name), "metadata": Jsonb(doc.metadata, dumps=_dumps),
            "model": embedder.name, "embedding": vector})
    return doc


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
