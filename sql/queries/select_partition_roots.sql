-- The root of each relation's partition tree (pg_partition_root), for relations given as parallel arrays
-- of schema and table names; relations that are not partitions are left out.
SELECT rel.schema_name AS schema, rel.table_name AS "table", rn.nspname AS root_schema, r.relname AS root_table
FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS rel(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = rel.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = rel.table_name
JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE r.oid <> c.oid
