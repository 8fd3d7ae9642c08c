-- The previous audit as this snapshot's selection weighs it (its proposals and its measurements),
-- stored with the snapshot when it was taken; kept out of the snapshot's usual reads (it can be large).
SELECT history -> 'previous_audit' AS previous_audit
FROM dbarch.snapshot
WHERE snapshot_id = %(snapshot_id)s
