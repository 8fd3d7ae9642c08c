-- Built-in functions that are non-volatile yet must never run for SQL dbarch did not write: found
-- from the catalog where PostgreSQL says so itself, by name where it cannot.
--  * EXECUTE revoked from PUBLIC: PostgreSQL reserves them (files, logs, replication origins, ...);
--  * the functions behind the views of server state (statistics, settings, activity, locks, files,
--    replication, memory), minus those the catalog views use too (pg_get_userbyid, has_*_privilege);
--  * classes no flag marks: functions that execute SQL given as text (ts_stat, ts_rewrite(.., text),
--    the *_to_xml family, pg_input_is_valid runs any type's input), read settings, files, sessions,
--    or print object definitions.
WITH view_funcs AS (
    SELECT c.relname, m[1]::oid AS fn
    FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class
    CROSS JOIN LATERAL regexp_matches(r.ev_action::text, ':funcid (\d+)', 'g') AS m
    JOIN pg_proc p ON p.oid = m[1]::oid
    WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      AND p.provolatile <> 'i'   -- immutable helpers (casts, arithmetic) read nothing
), state_view_funcs AS (
    SELECT fn FROM view_funcs
    WHERE relname ~ '^pg_(stat|statio|settings|file_settings|hba_file|ident_file|locks|prepared|cursors|replication|backend_memory|shmem|config|wait_events|aios|available_ext|sequences|user_mappings|shadow)'
    EXCEPT
    SELECT fn FROM view_funcs
    WHERE relname !~ '^pg_(stat|statio|settings|file_settings|hba_file|ident_file|locks|prepared|cursors|replication|backend_memory|shmem|config|wait_events|aios|available_ext|sequences|user_mappings|shadow)'
)
SELECT p.oid, p.proname::text AS name,
       CASE
         WHEN NOT has_function_privilege('public', p.oid, 'EXECUTE') THEN 'reserved by PostgreSQL for privileged roles'
         WHEN p.proname ~ '^(ts_stat|query_to_xml.*|cursor_to_xml.*|table_to_xml.*|schema_to_xml.*|database_to_xml.*|pg_input_is_valid|pg_input_error_info)$'
              OR (p.proname = 'ts_rewrite' AND 'text'::regtype = ANY (p.proargtypes))
           THEN 'executes SQL (or a type''s input function) given as text'
         WHEN p.oid IN (SELECT fn FROM state_view_funcs) THEN 'reads server state behind the statistics/settings/activity views'
         ELSE 'changes or reads server state (settings, files, statistics, sessions, locks, replication, storage)'
       END AS reason
FROM pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
  AND (NOT has_function_privilege('public', p.oid, 'EXECUTE')
       OR p.oid IN (SELECT fn FROM state_view_funcs)
       OR p.proname ~ '^(ts_stat|query_to_xml.*|cursor_to_xml.*|table_to_xml.*|schema_to_xml.*|database_to_xml.*|pg_input_is_valid|pg_input_error_info)$'
       OR (p.proname = 'ts_rewrite' AND 'text'::regtype = ANY (p.proargtypes))
       OR p.proname ~ '^(current_setting|pg_settings_.*|pg_show_.*|pg_stat_.*|pg_statio_.*|pg_ls_.*|pg_read_.*|pg_.*file.*|pg_get_(backend|shmem|aios|replication|wal|multixact|catalog).*|pg_get_.*def|pg_get_function_.*|pg_lock_status|pg_blocking_pids|pg_safe_snapshot_blocking_pids|pg_isolation_test_session_is_blocked|pg_backend_pid|pg_postmaster_start_time|pg_conf_load_time|pg_current_.*|pg_last_.*|pg_control_.*|pg_walfile_.*|pg_wal_.*|pg_notification_queue_usage|pg_listening_channels|pg_prepared_.*|pg_cursor|pg_tablespace_.*|pg_database_size|pg_xact_.*|txid_.*|pg_snapshot_.*|pg_visible_in_snapshot|inet_server_.*|inet_client_.*|pg_my_temp_schema|pg_trigger_depth|pg_sequence_.*|pg_export_snapshot|pg_log_.*|pg_replication_.*|pg_copy_.*|pg_create_.*|pg_drop_.*|pg_logical_.*|pg_sync_.*|pg_promote|pg_backup_.*|pg_switch_wal|pg_reload_conf|pg_rotate_logfile|pg_terminate_backend|pg_cancel_backend|pg_sleep.*|pg_advisory.*|pg_try_advisory.*|pg_notify|set_config|lo_.*|brin_.*summarize.*|gin_clean_pending_list|pg_import_system_collations|pg_nextoid|setval|nextval|currval|lastval)$')
