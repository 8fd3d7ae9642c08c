-- A run's verdict on the statements it evaluated: their proposed rows it did not choose again become
-- history (superseded). Rows a person or the target decided (applied, declined, rejected) stay.
UPDATE dbarch.optimization_log o
SET status = 'superseded', superseded_at = now(), updated_at = now()
WHERE o.target = %(target)s
  AND o.status = 'proposed'
  AND o.fingerprint = ANY(%(evaluated)s::text[])
  AND NOT EXISTS (SELECT 1
                  FROM unnest(%(fingerprints)s::text[], %(ddls)s::text[]) AS k(fingerprint, ddl)
                  WHERE k.fingerprint = o.fingerprint AND k.ddl = o.ddl)
RETURNING o.id
