-- The statements other client sessions of this database are running now (the sampler of
-- bench/activity.py): the text as the client sent it and the query_id naming its pg_stat_statements
-- entry. dbarch's own sessions are left out (this one, and every session named `dbarch`). A session
-- of another role whose text this role may not read (without pg_read_all_stats) shows
-- `<insufficient privilege>` and no state: it is returned too, so it can be counted and named.
SELECT pid, query_start, query_id, query, usename::text AS usename
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') <> %(application_name)s
  AND ((state = 'active' AND backend_type = 'client backend') OR query = '<insufficient privilege>')
