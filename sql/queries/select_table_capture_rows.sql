SELECT capture_id, table_name, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
FROM dbarch.table_capture
WHERE capture_id = ANY(%(capture_ids)s)
