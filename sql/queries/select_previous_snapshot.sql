-- The snapshot of the week before, for week-over-week comparisons.
SELECT snapshot_id, partition_key, window_start
FROM dbarch.snapshot
WHERE target = %(target)s AND window_start < %(window_start)s AND partition_key IS NOT NULL
ORDER BY window_start DESC
LIMIT 1
