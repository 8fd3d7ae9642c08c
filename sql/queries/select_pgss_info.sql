SELECT i.stats_reset, i.dealloc, current_setting('pg_stat_statements.max')::int AS max_entries,
       (SELECT count(*) FROM pg_stat_statements)::int AS entries,
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS db_stats_reset
FROM pg_stat_statements_info i
