-- The stored documents of one target and kind, with their content hash (to re-embed only changes).
SELECT key, source, content_hash
FROM dbarch.ask_document
WHERE target = %(target)s AND kind = %(kind)s
