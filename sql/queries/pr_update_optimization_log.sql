-- A pull request's outcome, on every log row it carries. One reopened (or opened anew) because the
-- evidence changed materially makes a rejected recommendation proposed again.
UPDATE dbarch.optimization_log
SET pr_url = %(url)s,
    pr_state = %(state)s,
    pr_number = %(number)s,
    pr_branch = %(branch)s,
    pr_evidence_hash = %(evidence_hash)s,
    pr_updated_at = now(),
    status = CASE WHEN status = 'rejected' AND %(revived)s THEN 'proposed' ELSE status END,
    rejected_at = CASE WHEN status = 'rejected' AND %(revived)s THEN NULL ELSE rejected_at END,
    rejected_by = CASE WHEN status = 'rejected' AND %(revived)s THEN NULL ELSE rejected_by END
WHERE id = ANY(%(ids)s::uuid[])
