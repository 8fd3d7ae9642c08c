INSERT INTO dbarch.snapshot (target, database, captured_at, stats_reset, thresholds, skipped, run_id,
                             window_seconds, table_writes, partition_key, window_start, window_end, history)
VALUES (%(target)s, %(database)s, %(captured_at)s, %(stats_reset)s, %(thresholds)s, %(skipped)s, %(run_id)s,
        %(window_seconds)s, %(table_writes)s, %(partition_key)s, %(window_start)s, %(window_end)s, %(history)s)
RETURNING snapshot_id
