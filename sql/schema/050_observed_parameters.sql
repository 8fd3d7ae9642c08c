-- Parameter values the application really bound, read from the target's server log (bench/observed.py):
-- a bounded, recent sample per statement (the newest N per fingerprint, none older than the retention
-- in days), so the benchmark times statements with what the application sends. The values can be
-- personal data: they stay in the store, and evidence shows only that a value was observed.
CREATE TABLE IF NOT EXISTS dbarch.observed_parameters (
    target       text             NOT NULL,
    fingerprint  text             NOT NULL,
    queryid      bigint,
    logged_at    timestamptz      NOT NULL,
    duration_ms  double precision,
    values_hash  text             NOT NULL,
    params       text[]           NOT NULL,
    source       text             NOT NULL,
    collected_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (target, fingerprint, logged_at, values_hash)
);
CREATE INDEX IF NOT EXISTS observed_parameters_recent_idx
    ON dbarch.observed_parameters (target, fingerprint, logged_at DESC);
