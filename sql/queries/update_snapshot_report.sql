UPDATE dbarch.snapshot SET report_md = %(report_md)s, report = %(report)s, reported_at = now()
WHERE snapshot_id = %(snapshot_id)s
