DELETE FROM dbarch.observed_parameters o
USING (SELECT target, fingerprint, logged_at, values_hash,
              row_number() OVER (PARTITION BY target, fingerprint ORDER BY logged_at DESC) AS n
       FROM dbarch.observed_parameters
       WHERE target = %(target)s) ranked
WHERE o.target = ranked.target AND o.fingerprint = ranked.fingerprint AND o.logged_at = ranked.logged_at
  AND o.values_hash = ranked.values_hash
  AND (ranked.n > %(keep)s OR o.logged_at < now() - make_interval(days => %(days)s))
