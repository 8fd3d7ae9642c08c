-- Pull requests (or local branches) of superseded recommendations that no current recommendation
-- needs: no current row of the target is published on that branch or recommends that index. Each
-- comes with the current recommendation of its statement that replaced it, if any.
SELECT DISTINCT ON (o.target, o.pr_branch)
       o.target, o.pr_branch, o.pr_number, o.pr_url, o.pr_state, o.fingerprint, o.ddl,
       r.ddl AS replacement_ddl, r.pr_url AS replacement_pr_url, r.status AS replacement_status
FROM dbarch.optimization_log o
LEFT JOIN LATERAL (SELECT c.ddl, c.pr_url, c.status
                   FROM dbarch.optimization_log c
                   WHERE c.target = o.target AND c.fingerprint = o.fingerprint AND c.kind = o.kind
                     AND c.status <> 'superseded'
                   ORDER BY c.updated_at DESC, c.id
                   LIMIT 1) r ON true
WHERE o.status = 'superseded'
  AND o.pr_state IN ('open', 'local')
  AND o.pr_branch IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM dbarch.optimization_log c
                  WHERE c.target = o.target AND c.status <> 'superseded'
                    AND (c.pr_branch = o.pr_branch OR c.ddl = o.ddl))
ORDER BY o.target, o.pr_branch, o.updated_at DESC
