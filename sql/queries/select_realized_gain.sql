-- The mean gain applied optimizations of a target really delivered (what the memory learned).
SELECT avg(realized_gain) AS realized_gain_pct, count(realized_gain) AS realized
FROM dbarch.optimization_log
WHERE target = %(target)s AND realized_gain IS NOT NULL
