SELECT capture_id, queryid, query_text, calls, total_exec_ms, rows, shared_blks_hit, shared_blks_read, stats_since
FROM dbarch.pgss_capture_row
WHERE capture_id = ANY(%(capture_ids)s)
