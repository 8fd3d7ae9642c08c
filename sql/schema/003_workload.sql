-- What workload-wide selection needs from a snapshot: how long pg_stat_statements has been counting
-- (to turn calls into a rate) and each table's write activity (to weigh an index's upkeep).
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS window_seconds double precision;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS table_writes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE dbarch.slow_query ADD COLUMN IF NOT EXISTS window_seconds double precision;
