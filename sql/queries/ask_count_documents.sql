-- How many documents of each kind a target's corpus holds.
SELECT count(*) FILTER (WHERE kind = 'table') AS tables,
       count(*) FILTER (WHERE kind = 'doc') AS doc_chunks,
       count(*) FILTER (WHERE kind = 'example') AS examples,
       count(*) AS documents
FROM dbarch.ask_document
WHERE target = %(target)s
