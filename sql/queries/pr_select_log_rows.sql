-- The newest index recommendation of each statement of a target, with its pull-request columns: an
-- older row of the same statement (another index, from an earlier week) is superseded, never published.
SELECT DISTINCT ON (fingerprint)
       id, target, fingerprint, queryid, query_text, recommendation, kind, ddl, performance_gain,
       estimated_gain, confidence, evidence, status, created_at, updated_at, applied_at,
       pr_url, pr_state, pr_number, pr_branch, pr_evidence_hash, pr_updated_at
FROM dbarch.optimization_log
WHERE target = %(target)s
  AND kind = 'index'
ORDER BY fingerprint, updated_at DESC, created_at DESC, id
