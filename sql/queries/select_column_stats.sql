SELECT attname AS column, null_frac, n_distinct, correlation
FROM pg_stats
WHERE schemaname = %(schema)s AND tablename = %(table)s
