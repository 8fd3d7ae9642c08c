-- Log rows written with an embedding the cache does not hold yet (rows written outside the audit):
-- the cache is where similarity search finds them.
INSERT INTO dbarch.query_embedding (fingerprint, normalized_query, model, embedding)
SELECT DISTINCT ON (o.fingerprint) o.fingerprint, o.query_text, %(model)s, o.embedding
FROM dbarch.optimization_log o
WHERE o.fingerprint = ANY(%(fingerprints)s)
  AND o.embedding IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM dbarch.query_embedding e WHERE e.fingerprint = o.fingerprint)
ORDER BY o.fingerprint, o.updated_at DESC
ON CONFLICT (fingerprint) DO NOTHING
