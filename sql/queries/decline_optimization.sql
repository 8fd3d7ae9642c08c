-- A person declines a current recommendation: it stays current (and visible), is never published,
-- and a re-run that chooses it again keeps it declined.
UPDATE dbarch.optimization_log
SET status = 'declined', updated_at = now()
WHERE id = %(id)s::uuid AND status = 'proposed'
RETURNING id, target, ddl
