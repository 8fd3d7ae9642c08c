-- Current recommendations (status <> 'superseded') with the week of the audit that made them (the
-- Sunday, UTC, starting its window; the row's creation for rows without a snapshot), for the
-- per-recommendation series.
SELECT o.id, o.target, o.kind, o.confidence, o.performance_gain, o.realized_gain,
       w.day - extract(dow FROM w.day)::int AS week
FROM dbarch.optimization_log o
LEFT JOIN dbarch.snapshot s ON s.snapshot_id = o.snapshot_id
CROSS JOIN LATERAL (SELECT (coalesce(s.window_start, s.captured_at, o.created_at) AT TIME ZONE 'UTC')::date AS day) w
WHERE o.status <> 'superseded'
ORDER BY o.target, week, o.id
