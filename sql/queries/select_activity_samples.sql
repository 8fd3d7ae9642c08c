SELECT queryid, query_text, executions
FROM dbarch.activity_sample
WHERE target = %(target)s AND queryid = ANY(%(queryids)s)
  AND last_seen >= now() - make_interval(days => %(days)s)
ORDER BY queryid, last_seen DESC, text_hash
