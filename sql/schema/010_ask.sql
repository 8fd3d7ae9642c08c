-- `dbarch ask`: the training corpus of each target, embedded with the same model as the
-- OptimizationLog. One row per document: a table of the target (from its catalog), a chunk of a
-- documentation file, or a question-SQL example (the user's file, or confirmed by use).
-- Idempotent: every statement can run again.
CREATE TABLE IF NOT EXISTS dbarch.ask_document (
    target       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('table', 'doc', 'example')),
    key          text NOT NULL,
    source       text NOT NULL,                -- 'catalog', a file path, or 'confirmed'
    content      text NOT NULL,                -- what goes into the prompt
    content_hash text NOT NULL,                -- of the model, the embedded text and the content
    metadata     jsonb NOT NULL DEFAULT '{}',
    model        text NOT NULL,
    embedding    vector(384) NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, kind, key)
);
CREATE INDEX IF NOT EXISTS ask_document_embedding_idx
    ON dbarch.ask_document USING hnsw (embedding vector_cosine_ops);
