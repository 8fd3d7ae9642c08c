INSERT INTO dbarch.optimization_log AS o
    (target, fingerprint, queryid, query_text, recommendation, kind, ddl, performance_gain, estimated_gain,
     confidence, embedding, evidence, status, snapshot_id)
SELECT target, fingerprint, queryid, query_text, recommendation, kind, ddl, performance_gain, estimated_gain,
       confidence, embedding, evidence, status, snapshot_id
FROM optimization_staging
ON CONFLICT (target, fingerprint, ddl) DO UPDATE
SET queryid = EXCLUDED.queryid,
    query_text = EXCLUDED.query_text,
    recommendation = EXCLUDED.recommendation,
    performance_gain = EXCLUDED.performance_gain,
    estimated_gain = EXCLUDED.estimated_gain,
    confidence = EXCLUDED.confidence,
    embedding = EXCLUDED.embedding,
    evidence = EXCLUDED.evidence,
    snapshot_id = EXCLUDED.snapshot_id,
    -- chosen again: a superseded row is current once more; a decided one keeps its status
    status = CASE WHEN o.status = 'superseded' THEN 'proposed' ELSE o.status END,
    superseded_at = CASE WHEN o.status = 'superseded' THEN NULL ELSE o.superseded_at END,
    updated_at = now()
RETURNING (xmax = 0) AS inserted
