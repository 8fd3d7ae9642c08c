-- Size, columns, column types and collations of one table, resolved through the search_path when the schema
-- is empty; with the database's collation (LIKE 'prefix%%' can use a plain btree only under C).
-- reltuples is -1 for a table never vacuumed or analyzed, and for a partitioned table (no storage).
SELECT n.nspname AS schema, c.relname AS table, c.oid AS oid, greatest(c.reltuples, 0)::bigint AS reltuples,
       c.reltuples < 0 AS never_analyzed, c.relkind::text AS relkind, c.relpages, pg_total_relation_size(c.oid) AS total_bytes,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       array(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS types,
       array(SELECT coalesce(co.collname, '') FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS collations,
       -- libc: the collation name; builtin ('b', code-point order) or ICU ('i'): the provider
       (SELECT CASE WHEN datlocprovider = 'c' THEN datcollate ELSE datlocprovider::text END
        FROM pg_database WHERE datname = current_database()) AS collation
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND c.relname = %(table)s
  AND (CASE WHEN %(schema)s = '' THEN n.nspname = ANY(current_schemas(false)) ELSE n.nspname = %(schema)s END)
ORDER BY array_position(current_schemas(false), n.nspname::name)
LIMIT 1
