SELECT min(captured_at) FROM dbarch.pgss_capture WHERE target = %(target)s
