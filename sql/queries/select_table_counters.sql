SELECT schemaname || '.' || relname AS table_name, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
FROM pg_stat_user_tables
