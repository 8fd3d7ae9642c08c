SELECT e.extversion,
       current_setting('shared_preload_libraries') AS preload
FROM pg_extension e
WHERE e.extname = 'pg_stat_statements'
