-- Applied recommendations without a realized gain yet, once their target has been captured after
-- the index appeared; with the first such capture, where the "after" window starts.
SELECT o.id, o.target, o.fingerprint, o.queryid, o.ddl, o.applied_at,
       (SELECT min(c.captured_at) FROM dbarch.pgss_capture c
        WHERE c.target = o.target AND c.captured_at > o.applied_at) AS first_capture_after
FROM dbarch.optimization_log o
WHERE o.status = 'applied'
  AND o.realized_gain IS NULL
  AND o.applied_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM dbarch.pgss_capture c WHERE c.target = o.target AND c.captured_at > o.applied_at)
ORDER BY o.applied_at, o.id
