-- Every index of the current database's user tables with what drop analysis needs: its shape (keys,
-- INCLUDE columns, operator classes, predicate), what depends on it (primary key, constraints,
-- replica identity), and how much it was used since the statistics were last reset.
-- Indexes of partitioned tables and their attached partition indexes are left out: they cannot be
-- dropped one by one, nor with DROP INDEX CONCURRENTLY.
SELECT n.nspname AS schema,
       t.relname AS table,
       ic.relname AS index,
       am.amname AS method,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS keys,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(i.indnkeyatts + 1, i.indnatts) AS k ORDER BY k) AS include,
       -- two indexes on the same column text are interchangeable only with the same operator
       -- class, collation and order (text_pattern_ops or DESC serve other queries)
       array(SELECT i.indclass[k - 1]
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS key_opclasses,
       array(SELECT i.indcollation[k - 1]
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS key_collations,
       array(SELECT i.indoption[k - 1]
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) AS key_options,
       i.indisunique AS is_unique,
       i.indisprimary AS is_primary,
       EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid) AS backs_constraint,
       i.indisreplident AS is_replica_identity,
       i.indpred IS NOT NULL AS is_partial,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       i.indisvalid AS is_valid,
       s.idx_scan,
       pg_relation_size(i.indexrelid) AS size_bytes,
       -- HOT updates change no index, so they are not part of what the index costs writes
       ts.n_tup_ins + ts.n_tup_upd - ts.n_tup_hot_upd + ts.n_tup_del AS table_writes,
       (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()) AS stats_reset,
       pg_get_indexdef(i.indexrelid) AS definition,
       -- the definition after "INDEX <name> ON ": equal bodies mean the same table, method, keys,
       -- operator classes, order, INCLUDE columns, NULLS NOT DISTINCT and predicate
       substr(pg_get_indexdef(i.indexrelid),
              strpos(pg_get_indexdef(i.indexrelid), ' ' || quote_ident(ic.relname) || ' ON ')
              + length(quote_ident(ic.relname)) + 5) AS body
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
LEFT JOIN pg_stat_user_tables ts ON ts.relid = i.indrelid
WHERE ic.relkind = 'i'
  AND t.relkind IN ('r', 'm')
  AND NOT EXISTS (SELECT 1 FROM pg_inherits inh WHERE inh.inhrelid = i.indexrelid)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'dbarch')
  AND n.nspname NOT LIKE 'pg\_toast%%'
  AND n.nspname NOT LIKE 'pg\_temp%%'
ORDER BY n.nspname, t.relname, ic.relname
