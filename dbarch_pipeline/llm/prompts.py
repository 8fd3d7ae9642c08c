"""Prompts and response schemas, as constants.

Templates use str.format with named fields; literal braces are doubled. Response schemas are the
OpenAPI subset Gemini's `responseSchema` accepts; they constrain the shape of a reply, never its
truth: every SQL string in a reply is validated before anything runs.
"""

# -- second opinion on a slow query ----------------------------------------------------------------

RECOMMEND_SYSTEM = """\
You are a senior PostgreSQL performance engineer giving a second opinion on one slow query.
A deterministic index advisor has already proposed candidates. Every suggestion you make is parsed,
checked against the catalog and benchmarked inside a transaction that is rolled back: only measured
gains count, so propose only what you expect the clock to confirm.
Rules:
- kind "index": exactly one CREATE INDEX statement, btree or gin, on existing tables and columns
  (a column, or lower()/upper() of a column); no UNIQUE, no other statement.
- kind "rewrite": exactly one SELECT that returns exactly the same rows (same columns; the same order
  when the query has ORDER BY) and uses the same $1, $2 ... parameters as the query.
- At most {max_ideas} recommendations; an empty list when nothing would help.
- rationale: one or two sentences."""

RECOMMEND_PROMPT = """\
## Slow query (normalized by pg_stat_statements: $n are parameters)
{query}

## Its plan
{plan}

## Tables it reads: definitions and statistics
{tables}

## Candidates already proposed by the deterministic advisor
{candidates}

## Similar past optimizations and their measured gains
{similar}

Reply with JSON: {{"recommendations": [{{"kind": "index" or "rewrite", "sql": "...", "rationale": "..."}}]}}"""

RECOMMEND_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "recommendations": {
            "type": "ARRAY",
            "items": {
                "type": "OBJECT",
                "properties": {
                    "kind": {"type": "STRING", "enum": ["index", "rewrite"]},
                    "sql": {"type": "STRING"},
                    "rationale": {"type": "STRING"},
                },
                "required": ["kind", "sql", "rationale"],
            },
        },
    },
    "required": ["recommendations"],
}

# -- ask the database --------------------------------------------------------------------------

ASK_SYSTEM = """\
You answer questions about a PostgreSQL database by writing one SQL query.
Rules:
- Exactly one read-only SELECT (WITH is fine; no INSERT/UPDATE/DELETE anywhere, no DDL, no COPY).
- Use only the tables and columns listed; they live in the schemas {schemas}.
- No parameters ($1): put the values from the question in the query.
- No functions with side effects (pg_sleep, set_config, dblink, lo_*, pg_read_file, nextval ...).
- At most {max_rows} rows are shown: aggregate, or ORDER BY and LIMIT, when a result could be larger.
- explanation: one or two plain sentences saying what the query returns."""

ASK_PROMPT = """\
## Question
{question}

## Tables
{tables}

## Documentation
{docs}

## Examples: questions and the SQL that answers them
{examples}

Reply with JSON: {{"sql": "...", "explanation": "..."}}"""

ASK_RETRY = """\

## Your previous answer did not work
SQL:
{sql}
Problem: {error}
Write a corrected query for the same question."""

ASK_SCHEMA = {
    "type": "OBJECT",
    "properties": {"sql": {"type": "STRING"}, "explanation": {"type": "STRING"}},
    "required": ["sql", "explanation"],
}

# -- explain a query ---------------------------------------------------------------------------------

EXPLAIN_SYSTEM = """\
You explain a PostgreSQL query to a developer in plain language: what it returns, how PostgreSQL runs
it according to the plan given, and what could make it slow. Use only the tables, indexes and plan
shown; never invent an index or a figure."""

EXPLAIN_PROMPT = """\
## SQL
{sql}

## Plan (EXPLAIN, FORMAT JSON, compacted)
{plan}

## Plan summary
{summary}

## Tables
{tables}

Reply with JSON: {{"explanation": "...", "concerns": ["..."]}}"""

EXPLAIN_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "explanation": {"type": "STRING"},
        "concerns": {"type": "ARRAY", "items": {"type": "STRING"}},
    },
    "required": ["explanation"],
}

NONE = "(none)"
