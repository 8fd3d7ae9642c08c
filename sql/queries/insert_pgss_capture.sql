INSERT INTO dbarch.pgss_capture (target, captured_at, stats_reset, dealloc, max_entries, entries, db_stats_reset,
                                 system_identifier, database_oid)
VALUES (%(target)s, %(captured_at)s, %(stats_reset)s, %(dealloc)s, %(max_entries)s, %(entries)s, %(db_stats_reset)s,
        %(system_identifier)s, %(database_oid)s)
RETURNING capture_id
