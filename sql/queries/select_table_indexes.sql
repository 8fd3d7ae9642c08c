-- Valid indexes of a table with their key columns and INCLUDE columns (expressions rendered by
-- pg_get_indexdef).
SELECT i.indexrelid::regclass::text AS name,
       am.amname AS method,
       i.indisunique AS is_unique,
       i.indpred IS NOT NULL AS is_partial,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS keys,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(i.indnkeyatts + 1, i.indnatts) AS k ORDER BY k) AS include,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = %(oid)s
  AND i.indisvalid
ORDER BY ic.relname
