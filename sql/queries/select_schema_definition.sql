-- Every user table's columns and every index definition, in a stable order: compared before and
-- after an audit to prove the target's schema did not change (dbarch's own schema aside, for a store
-- that shares the target's database).
SELECT 'column' AS kind, n.nspname || '.' || c.relname AS object,
       a.attnum::text || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS definition
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'v')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'dbarch') AND n.nspname NOT LIKE 'pg\_toast%%'
  AND n.nspname NOT LIKE 'pg\_temp%%'
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', schemaname || '.' || tablename, indexdef
FROM pg_indexes
WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'dbarch') AND schemaname NOT LIKE 'pg\_temp%%'
UNION ALL
SELECT 'constraint', conrelid::regclass::text, pg_get_constraintdef(oid)
FROM pg_constraint
WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema', 'dbarch'))
ORDER BY 1, 2, 3
