-- Who a target is: its server's system identifier and its database's OID (a recreated database has a
-- new OID), with the names people read.
SELECT (pg_control_system()).system_identifier::text AS system_identifier,
       d.oid::bigint AS database_oid,
       current_database() AS database,
       coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port') AS server
FROM pg_database d
WHERE d.datname = current_database()
