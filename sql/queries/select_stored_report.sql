-- A stored week report: the partition's when a week is named, else the target's latest reported week.
SELECT target, partition_key, window_start, report_md, report, reported_at
FROM dbarch.snapshot
WHERE target = %(target)s
  AND report_md IS NOT NULL
  AND (%(week_start)s::timestamptz IS NULL OR window_start = %(week_start)s)
ORDER BY window_start DESC NULLS LAST, captured_at DESC
LIMIT 1
