-- Per target: slow statements of its latest audited week, log rows, and the mean confidence and
-- measured gain of that week's recommendations, with the mean realized gain of applied indexes.
WITH latest AS (
    SELECT DISTINCT ON (target) target, snapshot_id
    FROM dbarch.snapshot
    ORDER BY target, window_start DESC NULLS LAST, captured_at DESC, snapshot_id DESC
), log AS (
    SELECT target, count(*) AS recommendations, avg(realized_gain) AS realized_gain
    FROM dbarch.optimization_log
    GROUP BY target
), week AS (
    SELECT o.target, avg(o.confidence) AS confidence, avg(o.performance_gain) AS performance_gain
    FROM dbarch.optimization_log o
    JOIN latest l ON l.snapshot_id = o.snapshot_id
    GROUP BY o.target
)
SELECT t.target,
       (SELECT count(*) FROM dbarch.slow_query q WHERE q.snapshot_id = l.snapshot_id) AS slow_queries,
       coalesce(g.recommendations, 0) AS recommendations,
       w.confidence,
       w.performance_gain,
       g.realized_gain
FROM (SELECT target FROM latest UNION SELECT target FROM log) AS t
LEFT JOIN latest l ON l.target = t.target
LEFT JOIN log g ON g.target = t.target
LEFT JOIN week w ON w.target = t.target
ORDER BY t.target
