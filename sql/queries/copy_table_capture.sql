COPY dbarch.table_capture (capture_id, table_name, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del) FROM STDIN
