SELECT b.queryid, b.ddl, b.status, b.cost_before, b.cost_after, b.ms_before, b.ms_after,
       b.estimated_gain_pct, b.measured_gain_pct, b.confidence, b.evidence
FROM dbarch.benchmark b
WHERE b.snapshot_id = %(snapshot_id)s
ORDER BY b.queryid, b.measured_gain_pct DESC NULLS LAST
