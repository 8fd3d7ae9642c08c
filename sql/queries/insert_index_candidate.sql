INSERT INTO dbarch.index_candidate (snapshot_id, queryid, ddl, table_name, columns, reason, similar_optimizations,
                                    spec, second_opinion)
VALUES (%(snapshot_id)s, %(queryid)s, %(ddl)s, %(table_name)s, %(columns)s, %(reason)s, %(similar)s, %(spec)s,
        %(second_opinion)s)
