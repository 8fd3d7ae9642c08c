-- Relations a statement reads: their kind, schema, extension membership, row-level security, and
-- the expression trees that run when they are read (a view's rule, RLS policies, virtual columns).
SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
       c.reltype::oid AS rowtype, c.relrowsecurity AS rls,
       (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass
          AND d.deptype = 'e' LIMIT 1) AS extension,
       ARRAY(SELECT r.ev_action::text FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type = '1')
         || ARRAY(SELECT p.polqual::text FROM pg_policy p WHERE p.polrelid = c.oid AND p.polqual IS NOT NULL)
         || ARRAY(SELECT ad.adbin::text FROM pg_attrdef ad
                  JOIN pg_attribute at ON at.attrelid = ad.adrelid AND at.attnum = ad.adnum
                  WHERE ad.adrelid = c.oid AND at.attgenerated = 'v') AS trees
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%(oids)s)
