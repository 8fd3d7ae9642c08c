-- Valid indexes of the named tables on a target: key columns as pg_get_indexdef renders them, each
-- key's operator class (and whether it is the type's default), INCLUDE columns and the partial
-- predicate, so a recommendation can be recognised by name or by an equivalent definition.
SELECT n.nspname AS schema_name,
       t.relname AS table_name,
       ic.relname AS index_name,
       am.amname AS method,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS keys,
       array(SELECT opc.opcname
             FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS c(oid, k)
             JOIN pg_opclass opc ON opc.oid = c.oid ORDER BY c.k) AS opclasses,
       array(SELECT opc.opcdefault
             FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS c(oid, k)
             JOIN pg_opclass opc ON opc.oid = c.oid ORDER BY c.k) AS default_opclasses,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(i.indnkeyatts + 1, i.indnatts) AS k ORDER BY k) AS include,
       coalesce(pg_get_expr(i.indpred, i.indrelid, true), '') AS predicate
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indisvalid
  AND t.relname = ANY(%(tables)s)
ORDER BY n.nspname, t.relname, ic.relname
