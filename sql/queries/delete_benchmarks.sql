DELETE FROM dbarch.benchmark WHERE snapshot_id = %(snapshot_id)s
