-- A pull request seen merged: watch.detect_applied then marks its proposed rows applied.
UPDATE dbarch.optimization_log
SET pr_state = 'merged', pr_updated_at = now(), updated_at = now()
WHERE target = %(target)s AND pr_number = %(number)s AND pr_state = 'open'
RETURNING id
