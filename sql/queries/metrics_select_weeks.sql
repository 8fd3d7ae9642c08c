-- Slow statements per audited (target, week): the week is the Sunday (UTC) starting the audit's
-- window (or holding its capture, for snapshots taken before weekly partitions); a week audited
-- twice counts its latest snapshot.
SELECT DISTINCT ON (target, week) target, week, slow_queries
FROM (
    SELECT s.target, s.captured_at, s.snapshot_id,
           w.day - extract(dow FROM w.day)::int AS week,
           (SELECT count(*) FROM dbarch.slow_query q WHERE q.snapshot_id = s.snapshot_id) AS slow_queries
    FROM dbarch.snapshot s,
         LATERAL (SELECT (coalesce(s.window_start, s.captured_at) AT TIME ZONE 'UTC')::date AS day) w
) AS audited
ORDER BY target, week, captured_at DESC, snapshot_id DESC
