-- Every name the store holds anything under: registered targets and the history of any other.
SELECT name FROM dbarch.target
UNION SELECT DISTINCT target FROM dbarch.pgss_capture
UNION SELECT DISTINCT target FROM dbarch.snapshot
UNION SELECT DISTINCT target FROM dbarch.optimization_log
