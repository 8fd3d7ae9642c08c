-- History: cumulative pg_stat_statements rows captured hourly, so each week's activity can be
-- computed later as the difference between captures (and past weeks backfilled from them alone).
CREATE TABLE IF NOT EXISTS dbarch.pgss_capture (
    capture_id   bigserial PRIMARY KEY,
    target       text        NOT NULL,
    captured_at  timestamptz NOT NULL,
    stats_reset  timestamptz,
    dealloc      bigint,
    max_entries  integer,
    entries      integer     NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pgss_capture_target_time_idx ON dbarch.pgss_capture (target, captured_at);

CREATE TABLE IF NOT EXISTS dbarch.pgss_capture_row (
    capture_id       bigint NOT NULL REFERENCES dbarch.pgss_capture ON DELETE CASCADE,
    queryid          bigint NOT NULL,
    query_text       text   NOT NULL,
    calls            bigint NOT NULL,
    total_exec_ms    double precision NOT NULL,
    rows             bigint NOT NULL,
    shared_blks_hit  bigint NOT NULL,
    shared_blks_read bigint NOT NULL,
    stats_since      timestamptz,
    PRIMARY KEY (capture_id, queryid)
);

CREATE TABLE IF NOT EXISTS dbarch.table_capture (
    capture_id    bigint NOT NULL REFERENCES dbarch.pgss_capture ON DELETE CASCADE,
    table_name    text   NOT NULL,
    n_tup_ins     bigint NOT NULL,
    n_tup_upd     bigint NOT NULL,
    n_tup_hot_upd bigint NOT NULL,
    n_tup_del     bigint NOT NULL,
    PRIMARY KEY (capture_id, table_name)
);

-- A snapshot can belong to a weekly partition: writing the partition again replaces it.
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS partition_key text;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS window_start timestamptz;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS window_end timestamptz;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS history jsonb NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX IF NOT EXISTS snapshot_target_partition_idx ON dbarch.snapshot (target, partition_key)
    WHERE partition_key IS NOT NULL;

-- What the applied-optimization sensor learns: the gain seen on the target after the index exists.
ALTER TABLE dbarch.optimization_log ADD COLUMN IF NOT EXISTS realized_gain double precision;
ALTER TABLE dbarch.optimization_log ADD COLUMN IF NOT EXISTS realized_at timestamptz;
