-- One OptimizationLog row with its evidence, its pull request and the audit (snapshot) that made it.
SELECT o.id, o.target, w.week, o.fingerprint, o.queryid, o.query_text, o.recommendation, o.kind, o.ddl,
       o.performance_gain, o.estimated_gain, o.realized_gain, o.confidence, o.status, o.evidence,
       o.snapshot_id, s.partition_key, s.window_start, s.window_end, s.run_id,
       o.pr_url, o.pr_state, o.pr_number, o.pr_branch, o.pr_updated_at, o.rejected_at, o.rejected_by,
       o.created_at, o.updated_at, o.applied_at, o.realized_at
FROM dbarch.optimization_log o
LEFT JOIN dbarch.snapshot s ON s.snapshot_id = o.snapshot_id
CROSS JOIN LATERAL (SELECT (coalesce(s.window_start, s.captured_at, o.created_at) AT TIME ZONE 'UTC')::date AS day) d
CROSS JOIN LATERAL (SELECT d.day - extract(dow FROM d.day)::int AS week) w
WHERE o.id = %(id)s
