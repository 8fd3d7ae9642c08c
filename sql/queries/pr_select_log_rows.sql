-- The newest index recommendation of each statement of a target (of one audit's snapshot when given),
-- with its pull-request columns: an older row of the same statement (another index, from an earlier
-- week or a run the workload-wide selection has since revised) is superseded, never published.
-- Superseded rows are history: never published.
SELECT DISTINCT ON (fingerprint)
       id, target, fingerprint, queryid, query_text, recommendation, kind, ddl, performance_gain,
       estimated_gain, confidence, evidence, status, created_at, updated_at, applied_at,
       pr_url, pr_state, pr_number, pr_branch, pr_evidence_hash, pr_updated_at
FROM dbarch.optimization_log
WHERE target = %(target)s
  AND kind = 'index'
  AND status <> 'superseded'
  AND (%(snapshot_id)s::bigint IS NULL OR snapshot_id = %(snapshot_id)s)
ORDER BY fingerprint, updated_at DESC, created_at DESC, id
