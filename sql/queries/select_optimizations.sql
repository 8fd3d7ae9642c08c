-- The log, newest first: current rows (status <> 'superseded') unless the history is asked for;
-- realized gains (what an applied index really did) are part of each row.
SELECT id, target, fingerprint, query_text, recommendation, kind, ddl, performance_gain, estimated_gain,
       confidence, status, snapshot_id, realized_gain, realized_at, created_at, updated_at, applied_at,
       superseded_at, pr_url, pr_branch, evidence
FROM dbarch.optimization_log
WHERE (%(target)s::text IS NULL OR target = %(target)s)
  AND (%(history)s OR status <> 'superseded')
ORDER BY created_at DESC, id
LIMIT %(limit)s
