-- When the current database was created: CREATE DATABASE writes its folder's PG_VERSION file, and
-- nothing rewrites it afterwards. pg_stat_file needs a superuser or an explicit GRANT; the OID is
-- readable by every role (the embedded server's files are read directly with it).
SELECT d.oid::bigint AS database_oid,
       d.dattablespace = (SELECT oid FROM pg_tablespace WHERE spcname = 'pg_default') AS in_default_tablespace
FROM pg_database d
WHERE d.datname = current_database()
