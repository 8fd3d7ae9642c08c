-- An index and, when it was built on a partitioned table, the partitions' own indexes.
SELECT c.relname
FROM pg_partition_tree(to_regclass(format('%%I.%%I', %(schema)s::text, %(name)s::text))) t
JOIN pg_class c ON c.oid = t.relid
