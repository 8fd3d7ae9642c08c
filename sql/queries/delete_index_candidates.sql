DELETE FROM dbarch.index_candidate WHERE snapshot_id = %(snapshot_id)s
