COPY dbarch.pgss_capture_row (capture_id, queryid, query_text, calls, total_exec_ms, rows, shared_blks_hit,
                              shared_blks_read, stats_since) FROM STDIN
