DELETE FROM dbarch.drop_recommendation WHERE snapshot_id = %(snapshot_id)s
