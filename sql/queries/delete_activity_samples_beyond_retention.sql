DELETE FROM dbarch.activity_sample a
USING (SELECT target, queryid, text_hash,
              row_number() OVER (PARTITION BY target, queryid ORDER BY last_seen DESC, text_hash) AS n
       FROM dbarch.activity_sample
       WHERE target = %(target)s) ranked
WHERE a.target = ranked.target AND a.queryid = ranked.queryid AND a.text_hash = ranked.text_hash
  AND (ranked.n > %(keep)s OR a.last_seen < now() - make_interval(days => %(days)s))
