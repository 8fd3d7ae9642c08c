-- Proposed recommendations the applied-optimization sensor checks: has the index appeared on the
-- target, or has its pull request been merged?
SELECT id, target, fingerprint, queryid, ddl, kind, pr_state, created_at
FROM dbarch.optimization_log
WHERE status = 'proposed'
ORDER BY target, created_at, id
