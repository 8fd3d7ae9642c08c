-- The log, newest first; realized gains (what an applied index really did) are part of each row.
SELECT id, target, fingerprint, query_text, recommendation, kind, ddl, performance_gain, estimated_gain,
       confidence, status, snapshot_id, realized_gain, realized_at, created_at, updated_at, applied_at
FROM dbarch.optimization_log
WHERE (%(target)s::text IS NULL OR target = %(target)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s
