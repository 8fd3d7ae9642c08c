-- The target's log: every row (history included), the current ones, and those with an embedding.
SELECT count(*) AS rows, count(*) FILTER (WHERE status <> 'superseded') AS current_rows,
       count(embedding) AS with_embedding
FROM dbarch.optimization_log WHERE target = %(target)s
