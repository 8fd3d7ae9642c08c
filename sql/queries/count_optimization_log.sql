SELECT count(*) AS rows, count(embedding) AS with_embedding FROM dbarch.optimization_log WHERE target = %(target)s
