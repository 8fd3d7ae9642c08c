-- The documents of one kind nearest to the question (cosine distance, HNSW index).
SELECT key, source, content, metadata, 1 - (embedding <=> %(embedding)s) AS similarity
FROM dbarch.ask_document
WHERE target = %(target)s AND kind = %(kind)s
ORDER BY embedding <=> %(embedding)s
LIMIT %(limit)s
