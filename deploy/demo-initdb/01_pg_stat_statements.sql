-- The demo target is audited like any database: pg_stat_statements preloaded (see the service's
-- command) and created in the audited database.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
