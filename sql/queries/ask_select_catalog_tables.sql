-- Tables and views of the allowed schemas with what a reader of the schema needs: columns (type,
-- NOT NULL, default, comment), primary key, unique and foreign keys (with the referenced table),
-- indexes, the row estimate and the table's comment. Objects of extensions (pg_stat_statements' views)
-- are not the application's and are left out.
SELECT n.nspname AS schema,
       c.relname AS table,
       c.relkind::text AS kind,
       greatest(c.reltuples, 0)::bigint AS row_estimate,
       obj_description(c.oid, 'pg_class') AS comment,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                            'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
                            'comment', col_description(c.oid, a.attnum)) ORDER BY a.attnum)
                 FROM pg_attribute a
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'type', con.contype::text, 'definition', pg_get_constraintdef(con.oid),
                            'columns', (SELECT jsonb_agg(a.attname ORDER BY k.ord)
                                        FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
                            'ref_schema', rn.nspname, 'ref_table', rc.relname) ORDER BY con.contype, con.conname)
                 FROM pg_constraint con
                 LEFT JOIN pg_class rc ON rc.oid = con.confrelid
                 LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                 WHERE con.conrelid = c.oid AND con.contype IN ('p', 'u', 'f')), '[]') AS constraints,
       coalesce((SELECT jsonb_agg(pg_get_indexdef(i.indexrelid) ORDER BY ic.relname)
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid), '[]') AS indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND n.nspname = ANY(%(schemas)s)
ORDER BY n.nspname, c.relname
