SELECT attname AS column, null_frac, n_distinct, correlation, avg_width,
       most_common_vals::text::text[] AS mcv, most_common_freqs AS mcf
FROM pg_stats
WHERE schemaname = %(schema)s AND tablename = %(table)s
