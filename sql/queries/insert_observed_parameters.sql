INSERT INTO dbarch.observed_parameters (target, fingerprint, queryid, logged_at, duration_ms, values_hash, params,
                                        source)
VALUES (%(target)s, %(fingerprint)s, %(queryid)s, %(logged_at)s, %(duration_ms)s, %(values_hash)s, %(params)s,
        %(source)s)
ON CONFLICT DO NOTHING
