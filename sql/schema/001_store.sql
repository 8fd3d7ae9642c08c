-- dbarch's own tables (the "store" role). Applied at start; every statement is idempotent.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA IF NOT EXISTS dbarch;

-- One row per capture of pg_stat_statements on a target.
CREATE TABLE IF NOT EXISTS dbarch.snapshot (
    snapshot_id  bigserial PRIMARY KEY,
    target       text        NOT NULL,
    database     text        NOT NULL,
    captured_at  timestamptz NOT NULL DEFAULT now(),
    stats_reset  timestamptz,
    thresholds   jsonb       NOT NULL DEFAULT '{}',
    skipped      jsonb       NOT NULL DEFAULT '{}',
    run_id       text
);
CREATE INDEX IF NOT EXISTS snapshot_target_captured_idx ON dbarch.snapshot (target, captured_at DESC);

-- The slow queries of one snapshot.
CREATE TABLE IF NOT EXISTS dbarch.slow_query (
    snapshot_id      bigint  NOT NULL REFERENCES dbarch.snapshot ON DELETE CASCADE,
    queryid          bigint  NOT NULL,
    fingerprint      text    NOT NULL,
    query_text       text    NOT NULL,
    calls            bigint  NOT NULL,
    total_exec_ms    double precision NOT NULL,
    mean_exec_ms     double precision NOT NULL,
    rows             bigint  NOT NULL,
    shared_blks_hit  bigint  NOT NULL,
    shared_blks_read bigint  NOT NULL,
    captured_at      timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, queryid)
);

-- Embedding cache: a fingerprint is embedded once, ever.
CREATE TABLE IF NOT EXISTS dbarch.query_embedding (
    fingerprint      text PRIMARY KEY,
    normalized_query text NOT NULL,
    model            text NOT NULL,
    embedding        vector(384) NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Candidate indexes proposed for the queries of a snapshot, with the similar past optimizations.
CREATE TABLE IF NOT EXISTS dbarch.index_candidate (
    snapshot_id  bigint NOT NULL REFERENCES dbarch.snapshot ON DELETE CASCADE,
    queryid      bigint NOT NULL,
    ddl          text   NOT NULL,
    table_name   text   NOT NULL,
    columns      text[] NOT NULL,
    reason       text   NOT NULL,
    similar_optimizations jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (snapshot_id, queryid, ddl)
);

-- Measurements of each candidate on the sandbox.
CREATE TABLE IF NOT EXISTS dbarch.benchmark (
    snapshot_id        bigint NOT NULL REFERENCES dbarch.snapshot ON DELETE CASCADE,
    queryid            bigint NOT NULL,
    ddl                text   NOT NULL,
    status             text   NOT NULL,  -- measured | failed
    cost_before        double precision,
    cost_after         double precision,
    ms_before          double precision,
    ms_after           double precision,
    estimated_gain_pct double precision,
    measured_gain_pct  double precision,
    confidence         double precision,
    evidence           jsonb  NOT NULL DEFAULT '{}',
    measured_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_id, queryid, ddl)
);

-- The seeds' OptimizationLog, plus what dbarch needs to keep it honest and deduplicated.
CREATE TABLE IF NOT EXISTS dbarch.optimization_log (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    target           text NOT NULL,
    fingerprint      text NOT NULL,
    queryid          bigint,
    query_text       text NOT NULL,
    recommendation   text NOT NULL,
    kind             text NOT NULL DEFAULT 'index',
    ddl              text NOT NULL,
    performance_gain double precision,
    estimated_gain   double precision,
    confidence       double precision CHECK (confidence BETWEEN 0 AND 1),
    embedding        vector(384),
    evidence         jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'proposed',
    snapshot_id      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    applied_at       timestamptz,
    UNIQUE (target, fingerprint, ddl)
);
CREATE INDEX IF NOT EXISTS optimization_log_created_at_idx ON dbarch.optimization_log (created_at);
CREATE INDEX IF NOT EXISTS optimization_log_embedding_idx
    ON dbarch.optimization_log USING hnsw (embedding vector_cosine_ops);
