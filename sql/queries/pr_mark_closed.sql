-- dbarch closed the pull request (or removed the local branch) of superseded recommendations.
UPDATE dbarch.optimization_log
SET pr_state = 'closed', pr_updated_at = now(), updated_at = now()
WHERE target = %(target)s AND pr_branch = %(branch)s AND status = 'superseded' AND pr_state IN ('open', 'local')
RETURNING id
