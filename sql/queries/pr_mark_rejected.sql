-- A pull request closed without merging: its proposed rows become rejected (when, by whom); rows a
-- person or the target already decided keep their status, superseded ones stay history.
UPDATE dbarch.optimization_log
SET status = CASE WHEN status = 'proposed' THEN 'rejected' ELSE status END,
    rejected_at = CASE WHEN status = 'proposed' THEN %(closed_at)s ELSE rejected_at END,
    rejected_by = CASE WHEN status = 'proposed' THEN %(closed_by)s ELSE rejected_by END,
    pr_state = 'closed', pr_updated_at = now(), updated_at = now()
WHERE target = %(target)s AND pr_number = %(number)s AND pr_state = 'open'
RETURNING id, status, ddl
