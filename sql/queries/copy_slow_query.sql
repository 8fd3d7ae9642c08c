COPY dbarch.slow_query (snapshot_id, queryid, fingerprint, query_text, calls, total_exec_ms, mean_exec_ms,
                        rows, shared_blks_hit, shared_blks_read, captured_at, window_seconds) FROM STDIN
