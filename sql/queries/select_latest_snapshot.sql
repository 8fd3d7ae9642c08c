SELECT snapshot_id, target, database, captured_at, stats_reset, thresholds, skipped, window_seconds, table_writes,
       partition_key, window_start, window_end, history - 'previous_audit' AS history
FROM dbarch.snapshot
WHERE target = %(target)s
ORDER BY captured_at DESC, snapshot_id DESC
LIMIT 1
