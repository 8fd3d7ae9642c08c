SELECT fingerprint, params
FROM dbarch.observed_parameters
WHERE target = %(target)s AND fingerprint = ANY(%(fingerprints)s)
  AND logged_at >= now() - make_interval(days => %(days)s)
ORDER BY fingerprint, logged_at DESC
