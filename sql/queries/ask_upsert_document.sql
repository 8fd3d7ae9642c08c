-- Insert or replace one corpus document (the embedding is only computed when its hash changed).
INSERT INTO dbarch.ask_document (target, kind, key, source, content, content_hash, metadata, model, embedding)
VALUES (%(target)s, %(kind)s, %(key)s, %(source)s, %(content)s, %(content_hash)s, %(metadata)s, %(model)s,
        %(embedding)s)
ON CONFLICT (target, kind, key) DO UPDATE
SET source = EXCLUDED.source, content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,
    metadata = EXCLUDED.metadata, model = EXCLUDED.model, embedding = EXCLUDED.embedding, updated_at = now()
