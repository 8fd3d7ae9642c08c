-- The leaf partition of a partitioned table with the most rows: its column statistics stand in for the
-- parent's, which autovacuum never collects.
SELECT n.nspname AS schema, c.relname AS table
FROM pg_partition_tree(%(oid)s::regclass) AS t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.isleaf
ORDER BY c.reltuples DESC, c.relname
LIMIT 1
