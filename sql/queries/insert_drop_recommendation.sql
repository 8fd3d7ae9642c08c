INSERT INTO dbarch.drop_recommendation (snapshot_id, ddl, kind, table_name, index_name, size_bytes, reason, evidence)
VALUES (%(snapshot_id)s, %(ddl)s, %(kind)s, %(table_name)s, %(index_name)s, %(size_bytes)s, %(reason)s, %(evidence)s)
