-- The OptimizationLog for the admin API: current rows (status <> 'superseded') unless history is
-- asked for, filtered by target, audited week (the Sunday, UTC, starting the audit's window; the
-- row's creation for rows without a snapshot), status, kind and minimum confidence, newest first;
-- `total` counts every row passing the filters, for paging.
SELECT o.id, o.target, w.week, o.fingerprint, o.query_text, o.recommendation, o.kind, o.ddl,
       o.performance_gain, o.estimated_gain, o.realized_gain, o.confidence, o.status, o.snapshot_id,
       o.pr_url, o.created_at, o.updated_at, o.applied_at, o.realized_at,
       count(*) OVER () AS total
FROM dbarch.optimization_log o
LEFT JOIN dbarch.snapshot s ON s.snapshot_id = o.snapshot_id
CROSS JOIN LATERAL (SELECT (coalesce(s.window_start, s.captured_at, o.created_at) AT TIME ZONE 'UTC')::date AS day) d
CROSS JOIN LATERAL (SELECT d.day - extract(dow FROM d.day)::int AS week) w
WHERE (%(history)s OR o.status <> 'superseded')
  AND (%(target)s::text IS NULL OR o.target = %(target)s)
  AND (%(week)s::date IS NULL OR w.week = %(week)s)
  AND (%(status)s::text IS NULL OR o.status = %(status)s)
  AND (%(kind)s::text IS NULL OR o.kind = %(kind)s)
  AND (%(min_confidence)s::float8 IS NULL OR o.confidence >= %(min_confidence)s)
ORDER BY o.created_at DESC, o.id
LIMIT %(limit)s OFFSET %(offset)s
