-- The modification time of a database folder's PG_VERSION file (written once, by CREATE DATABASE).
SELECT (pg_stat_file(%(path)s, true)).modification
