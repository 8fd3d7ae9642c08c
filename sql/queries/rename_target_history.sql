-- A target's history moves to another name (a recreated database: the old database's history is
-- kept, under a retired name, and the new database starts afresh under the readable one).
WITH t AS (UPDATE dbarch.target SET name = %(new)s, retired_at = now(), scheduled = false
           WHERE name = %(old)s RETURNING 1),
     c AS (UPDATE dbarch.pgss_capture SET target = %(new)s WHERE target = %(old)s RETURNING 1),
     s AS (UPDATE dbarch.snapshot SET target = %(new)s WHERE target = %(old)s RETURNING 1),
     o AS (UPDATE dbarch.optimization_log SET target = %(new)s WHERE target = %(old)s RETURNING 1),
     -- the values the old database's application bound belong to it, not to the new database
     p AS (UPDATE dbarch.observed_parameters SET target = %(new)s WHERE target = %(old)s RETURNING 1),
     -- and so do the statement texts sampled from its pg_stat_activity
     a AS (UPDATE dbarch.activity_sample SET target = %(new)s WHERE target = %(old)s RETURNING 1)
SELECT (SELECT count(*) FROM c) AS captures, (SELECT count(*) FROM s) AS snapshots,
       (SELECT count(*) FROM o) AS log_rows, (SELECT count(*) FROM p) AS observed_values,
       (SELECT count(*) FROM a) AS activity_samples
