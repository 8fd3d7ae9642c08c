-- The most common values of low-cardinality text columns (status, plan, country ...), so that the
-- prompt shows the literals a question refers to. Columns with many distinct values (emails, names)
-- never appear: n_distinct must be a small positive count.
SELECT s.schemaname AS schema, s.tablename AS table, s.attname AS column,
       (s.most_common_vals::text::text[])[1:%(max_values)s] AS vals,
       s.n_distinct
FROM pg_stats s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname
JOIN pg_type t ON t.oid = a.atttypid
WHERE s.schemaname = ANY(%(schemas)s)
  AND t.typcategory IN ('S', 'E')
  AND s.n_distinct > 0 AND s.n_distinct <= %(max_distinct)s
  AND s.most_common_vals IS NOT NULL
ORDER BY 1, 2, 3
