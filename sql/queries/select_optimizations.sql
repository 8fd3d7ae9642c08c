SELECT id, target, fingerprint, query_text, recommendation, kind, ddl, performance_gain, estimated_gain,
       confidence, status, created_at, updated_at, applied_at
FROM dbarch.optimization_log
WHERE (%(target)s::text IS NULL OR target = %(target)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s
