-- Statement texts sampled from the target's pg_stat_activity while they ran (bench/activity.py): the
-- text as the client sent it, constants included (bound parameters stay `$n`), under the query_id
-- that names its pg_stat_statements entry. A bounded, recent sample of distinct texts per statement
-- (the newest N per query_id, none older than the retention in days); the audit recovers from them
-- the constants pg_stat_statements turned into parameters, as it does from the server log. The texts
-- can hold personal data: they stay in the store, and evidence names only where a constant came from.
CREATE TABLE IF NOT EXISTS dbarch.activity_sample (
    target      text        NOT NULL,
    queryid     bigint      NOT NULL,
    text_hash   text        NOT NULL,
    query_text  text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    executions  integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (target, queryid, text_hash)
);
CREATE INDEX IF NOT EXISTS activity_sample_recent_idx
    ON dbarch.activity_sample (target, queryid, last_seen DESC);
