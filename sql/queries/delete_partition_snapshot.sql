-- Writing a partition replaces it: its snapshot and, by cascade, everything derived from it.
DELETE FROM dbarch.snapshot WHERE target = %(target)s AND partition_key = %(partition_key)s
