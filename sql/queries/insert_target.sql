INSERT INTO dbarch.target (name, system_identifier, database_oid, database, server, dsn_env, dsn, scheduled)
VALUES (%(name)s, %(system_identifier)s, %(database_oid)s, %(database)s, %(server)s, %(dsn_env)s, %(dsn)s,
        %(scheduled)s)
ON CONFLICT (name) DO UPDATE
SET dsn_env = coalesce(EXCLUDED.dsn_env, dbarch.target.dsn_env),
    dsn = coalesce(EXCLUDED.dsn, dbarch.target.dsn),
    scheduled = dbarch.target.scheduled OR EXCLUDED.scheduled,
    retired_at = NULL
