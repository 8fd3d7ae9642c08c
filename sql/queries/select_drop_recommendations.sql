SELECT ddl, kind, table_name, index_name, size_bytes, reason, evidence
FROM dbarch.drop_recommendation
WHERE snapshot_id = %(snapshot_id)s
ORDER BY size_bytes DESC, ddl
