-- Every relation name (tables, views, sequences, indexes, ...) in the given schemas: an index name
-- must differ from all of them.
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s)
