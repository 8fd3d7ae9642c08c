-- The registered targets (retired ones too when asked), with their first and last capture.
SELECT t.name, t.system_identifier, t.database_oid, t.database, t.server, t.dsn_env, t.dsn, t.scheduled,
       t.created_at, t.retired_at,
       (SELECT min(c.captured_at) FROM dbarch.pgss_capture c WHERE c.target = t.name) AS first_capture,
       (SELECT max(c.captured_at) FROM dbarch.pgss_capture c WHERE c.target = t.name) AS last_capture
FROM dbarch.target t
WHERE %(retired)s OR t.retired_at IS NULL
ORDER BY t.retired_at NULLS FIRST, t.name
