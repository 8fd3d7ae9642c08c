INSERT INTO dbarch.activity_sample (target, queryid, text_hash, query_text, first_seen, last_seen, executions)
VALUES (%(target)s, %(queryid)s, %(text_hash)s, %(query_text)s, %(seen)s, %(seen)s, %(executions)s)
ON CONFLICT (target, queryid, text_hash) DO UPDATE
SET last_seen = greatest(dbarch.activity_sample.last_seen, excluded.last_seen),
    executions = dbarch.activity_sample.executions + excluded.executions
