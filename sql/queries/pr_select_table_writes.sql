-- Write activity and existing indexes of the tables a pull request adds an index to: every insert,
-- delete and non-HOT update must also maintain the new index.
SELECT s.schemaname AS schema, s.relname AS table, s.n_live_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd,
       s.n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid) AS indexes,
       extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time())) AS seconds
FROM pg_stat_user_tables s
CROSS JOIN (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) d
WHERE (s.schemaname, s.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(tables)s::text[]))
