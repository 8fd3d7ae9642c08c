-- How many of a batch's (target, fingerprint, ddl) keys the log already holds.
SELECT count(*)
FROM dbarch.optimization_log o
JOIN unnest(%(targets)s::text[], %(fingerprints)s::text[], %(ddls)s::text[]) AS k(target, fingerprint, ddl)
  ON (o.target, o.fingerprint, o.ddl) = (k.target, k.fingerprint, k.ddl)
