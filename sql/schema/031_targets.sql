-- Targets with an identity and a lifecycle. A target is a database on a server: the server's system
-- identifier (pg_control_system()) and the database's OID, shown under a readable name (the
-- partition key and the `target` column everywhere else). A recreated database has a new OID and
-- starts a new history; two servers with a database of the same name get two names.
-- The DSN is kept only as a reference: an environment variable's name, or a DSN without password
-- (the password then comes from the environment, PGPASSWORD or ~/.pgpass). Never a password.
CREATE TABLE IF NOT EXISTS dbarch.target (
    name              text PRIMARY KEY,
    system_identifier text NOT NULL,
    database_oid      bigint NOT NULL,
    database          text NOT NULL,
    server            text NOT NULL,            -- host:port, for people
    dsn_env           text,                     -- name of an environment variable holding the DSN
    dsn               text,                     -- a DSN without password
    scheduled         boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz,              -- recreated or removed: history kept, never audited
    CHECK (dsn IS NULL OR dsn !~* '(password=|://[^/@]*:[^/@]*@)')
);
CREATE UNIQUE INDEX IF NOT EXISTS target_identity_idx ON dbarch.target (system_identifier, database_oid)
    WHERE retired_at IS NULL;

ALTER TABLE dbarch.pgss_capture ADD COLUMN IF NOT EXISTS system_identifier text;
ALTER TABLE dbarch.pgss_capture ADD COLUMN IF NOT EXISTS database_oid bigint;
