INSERT INTO dbarch.benchmark (snapshot_id, queryid, ddl, status, cost_before, cost_after, ms_before, ms_after,
                              estimated_gain_pct, measured_gain_pct, confidence, evidence)
VALUES (%(snapshot_id)s, %(queryid)s, %(ddl)s, %(status)s, %(cost_before)s, %(cost_after)s, %(ms_before)s,
        %(ms_after)s, %(estimated_gain_pct)s, %(measured_gain_pct)s, %(confidence)s, %(evidence)s)
