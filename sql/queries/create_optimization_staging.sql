CREATE TEMP TABLE optimization_staging
    (LIKE dbarch.optimization_log INCLUDING DEFAULTS) ON COMMIT DROP
