SELECT fingerprint FROM dbarch.query_embedding WHERE fingerprint = ANY(%(fingerprints)s)
