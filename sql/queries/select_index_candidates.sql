SELECT queryid, ddl, table_name, columns, reason, similar_optimizations AS similar, spec, second_opinion
FROM dbarch.index_candidate
WHERE snapshot_id = %(snapshot_id)s
ORDER BY queryid, ddl
