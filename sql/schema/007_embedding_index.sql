-- Embeddings are indexed once per distinct statement, in the embedding cache that the log joins by
-- fingerprint: writing the OptimizationLog (a batch per audit, COPY) then never maintains a vector
-- graph, whose insertion costs about a millisecond per row.
CREATE INDEX IF NOT EXISTS query_embedding_hnsw_idx
    ON dbarch.query_embedding USING hnsw (embedding vector_cosine_ops);
DROP INDEX IF EXISTS dbarch.optimization_log_embedding_idx;
CREATE INDEX IF NOT EXISTS optimization_log_fingerprint_idx ON dbarch.optimization_log (fingerprint);

-- When the target database's statistics were last reset: table write counters span from there.
ALTER TABLE dbarch.pgss_capture ADD COLUMN IF NOT EXISTS db_stats_reset timestamptz;
