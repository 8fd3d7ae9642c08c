-- The partitioned indexes the named indexes belong to, up to the root: an index created on a partitioned
-- table creates one index per partition, named differently, and plans name those.
SELECT DISTINCT p.relname::text AS name
FROM pg_class i
CROSS JOIN LATERAL pg_partition_ancestors(i.oid) AS a(relid)
JOIN pg_class p ON p.oid = a.relid
WHERE i.relkind = 'i' AND i.relname = ANY(%(names)s::text[]) AND p.oid <> i.oid
