COPY dbarch.optimization_log (target, fingerprint, queryid, query_text, recommendation, kind, ddl, performance_gain,
                              estimated_gain, confidence, embedding, evidence, status, snapshot_id)
FROM STDIN WITH (FORMAT BINARY)
