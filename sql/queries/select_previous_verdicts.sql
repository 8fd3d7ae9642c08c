-- What the target's previous audits decided and nobody has settled yet: the current proposed index
-- rows (one per statement and index; a configuration gives one per member).
SELECT o.fingerprint, o.ddl
FROM dbarch.optimization_log o
WHERE o.target = %(target)s
  AND o.kind = 'index'
  AND o.status = 'proposed'
ORDER BY o.fingerprint, o.ddl
