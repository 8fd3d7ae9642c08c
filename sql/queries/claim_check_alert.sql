INSERT INTO dbarch.check_alert (target, week, check_name, run_id)
VALUES (%(target)s, %(week)s, %(check_name)s, %(run_id)s)
ON CONFLICT DO NOTHING
RETURNING 1
