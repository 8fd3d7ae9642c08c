SELECT queryid, query_text, fingerprint, calls, total_exec_ms, mean_exec_ms, rows,
       shared_blks_hit, shared_blks_read, captured_at, window_seconds
FROM dbarch.slow_query
WHERE snapshot_id = %(snapshot_id)s
ORDER BY total_exec_ms DESC
