-- `dbarch targets remove --purge`: everything the store knows of a target, including the values its
-- application bound (observed in the log), the statement texts sampled from its pg_stat_activity,
-- and the documents `ask` built from its schema and values.
WITH t AS (DELETE FROM dbarch.target WHERE name = %(name)s RETURNING 1),
     c AS (DELETE FROM dbarch.pgss_capture WHERE target = %(name)s RETURNING 1),
     s AS (DELETE FROM dbarch.snapshot WHERE target = %(name)s RETURNING 1),
     o AS (DELETE FROM dbarch.optimization_log WHERE target = %(name)s RETURNING 1),
     p AS (DELETE FROM dbarch.observed_parameters WHERE target = %(name)s RETURNING 1),
     a AS (DELETE FROM dbarch.ask_document WHERE target = %(name)s RETURNING 1),
     x AS (DELETE FROM dbarch.activity_sample WHERE target = %(name)s RETURNING 1)
SELECT (SELECT count(*) FROM c) AS captures, (SELECT count(*) FROM s) AS snapshots,
       (SELECT count(*) FROM o) AS log_rows, (SELECT count(*) FROM p) AS observed_values,
       (SELECT count(*) FROM a) AS ask_documents, (SELECT count(*) FROM x) AS activity_samples
