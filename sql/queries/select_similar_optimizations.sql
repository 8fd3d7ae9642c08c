-- The nearest past optimizations, those with a realized gain (proven on a real target) first. The
-- HNSW index on the embedding cache finds the nearest statements (an iterative scan goes on until
-- enough of them have a log row); only those few rows are re-ordered.
SELECT id, target, fingerprint, query_text, recommendation, ddl, performance_gain, realized_gain, confidence, status,
       applied_at, similarity
FROM (
    SELECT o.id, o.target, o.fingerprint, o.query_text, o.recommendation, o.ddl, o.performance_gain, o.realized_gain, o.confidence,
           o.status, o.applied_at,
           1 - (e.embedding <=> %(embedding)s) AS similarity,
           e.embedding <=> %(embedding)s AS distance
    FROM dbarch.query_embedding e
    JOIN dbarch.optimization_log o ON o.fingerprint = e.fingerprint
    WHERE (%(exclude_fingerprint)s::text IS NULL OR e.fingerprint <> %(exclude_fingerprint)s)
      AND (%(history)s OR o.status <> 'superseded')
      AND (%(target)s::text IS NULL OR o.target = %(target)s)
    ORDER BY e.embedding <=> %(embedding)s
    LIMIT %(limit)s * 4
) AS nearest
ORDER BY (realized_gain IS NOT NULL) DESC, distance
LIMIT %(limit)s
