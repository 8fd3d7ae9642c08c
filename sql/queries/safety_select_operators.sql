-- Operators a statement uses, with the functions they run: the operator's own code and the
-- estimators the planner calls (restriction and join selectivity).
SELECT o.oid, n.nspname::text AS schema, o.oid::regoperator::text AS signature,
       o.oprcode::oid AS code, o.oprrest::oid AS rest, o.oprjoin::oid AS join,
       (n.nspname = 'pg_catalog' AND o.oid < 16384) AS builtin,
       (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_operator'::regclass AND d.objid = o.oid AND d.refclassid = 'pg_extension'::regclass
          AND d.deptype = 'e' LIMIT 1) AS extension
FROM pg_operator o
JOIN pg_namespace n ON n.oid = o.oprnamespace
WHERE o.oid = ANY(%(oids)s)
