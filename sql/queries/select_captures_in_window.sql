-- The captures of a window, and the last one before it (the baseline), oldest first.
SELECT capture_id, captured_at, stats_reset, dealloc, max_entries, entries, db_stats_reset
FROM dbarch.pgss_capture
WHERE target = %(target)s
  AND captured_at < %(window_end)s
  AND captured_at >= coalesce((SELECT max(captured_at) FROM dbarch.pgss_capture
                               WHERE target = %(target)s AND captured_at <= %(window_start)s),
                              %(window_start)s)
ORDER BY captured_at, capture_id
