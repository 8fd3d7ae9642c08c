-- `dbarch targets remove --purge`: everything the store knows of a target.
WITH t AS (DELETE FROM dbarch.target WHERE name = %(name)s RETURNING 1),
     c AS (DELETE FROM dbarch.pgss_capture WHERE target = %(name)s RETURNING 1),
     s AS (DELETE FROM dbarch.snapshot WHERE target = %(name)s RETURNING 1),
     o AS (DELETE FROM dbarch.optimization_log WHERE target = %(name)s RETURNING 1)
SELECT (SELECT count(*) FROM c) AS captures, (SELECT count(*) FROM s) AS snapshots,
       (SELECT count(*) FROM o) AS log_rows
