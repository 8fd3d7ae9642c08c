-- Rows written per table since the statistics were reset, and over how many seconds: an index
-- on the table costs upkeep on every insert, delete and non-HOT update.
SELECT s.schemaname || '.' || s.relname AS table,
       s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
       extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time())) AS seconds
FROM pg_stat_user_tables s
CROSS JOIN (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) d
