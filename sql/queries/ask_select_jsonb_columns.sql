-- jsonb columns of the allowed schemas: their keys are sampled so the prompt can name them.
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s)
  AND c.relkind IN ('r', 'p', 'm')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid = 'jsonb'::regtype
ORDER BY 1, 2, 3
