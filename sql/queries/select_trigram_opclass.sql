-- Whether pg_trgm's GIN operator class exists and is visible on the search_path (an index may name it
-- unqualified).
SELECT EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops' AND pg_opclass_is_visible(oid))
