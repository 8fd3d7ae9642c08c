UPDATE dbarch.optimization_log
SET pr_url = %(url)s,
    pr_state = %(state)s,
    pr_number = %(number)s,
    pr_branch = %(branch)s,
    pr_evidence_hash = %(evidence_hash)s,
    pr_updated_at = now()
WHERE id = ANY(%(ids)s::uuid[])
