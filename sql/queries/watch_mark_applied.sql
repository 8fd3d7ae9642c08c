-- Recommendations seen applied. Only proposed rows move, so a row applied earlier keeps its date.
UPDATE dbarch.optimization_log
SET status = 'applied',
    applied_at = coalesce(applied_at, %(applied_at)s),
    updated_at = now()
WHERE id = ANY(%(ids)s::uuid[])
  AND status = 'proposed'
RETURNING id
