SELECT id, query_text, recommendation, ddl, performance_gain, confidence, status, applied_at,
       1 - (embedding <=> %(embedding)s) AS similarity
FROM dbarch.optimization_log
WHERE embedding IS NOT NULL
  AND (%(exclude_fingerprint)s::text IS NULL OR fingerprint <> %(exclude_fingerprint)s)
ORDER BY embedding <=> %(embedding)s
LIMIT %(limit)s
