-- Every table document of a target with its cosine similarity to the question: retrieval scores all
-- of them (similarity plus words of the question found in names and values), then keeps a few.
SELECT key, content, metadata, 1 - (embedding <=> %(embedding)s) AS similarity
FROM dbarch.ask_document
WHERE target = %(target)s AND kind = 'table'
ORDER BY embedding <=> %(embedding)s
