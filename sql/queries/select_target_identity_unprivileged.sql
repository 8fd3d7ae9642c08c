-- The identity without pg_control_system() (a role without pg_monitor): the server's address
-- stands in for its system identifier.
SELECT 'server:' || coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')
           AS system_identifier,
       d.oid::bigint AS database_oid,
       current_database() AS database,
       coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port') AS server
FROM pg_database d
WHERE d.datname = current_database()
