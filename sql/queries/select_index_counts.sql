-- How many indexes each user table already has: an index that turns a table's HOT updates into
-- regular ones makes every one of them take an entry again.
SELECT n.nspname || '.' || c.relname AS table_name, count(*) AS indexes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
GROUP BY 1
