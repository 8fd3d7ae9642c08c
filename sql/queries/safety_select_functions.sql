-- What the allow-list needs to know of each function a statement would run: where it comes from
-- (PostgreSQL itself, an extension, the database), its volatility, and its kind.
SELECT p.oid, n.nspname::text AS schema, p.proname::text AS name,
       p.oid::regprocedure::text AS signature, p.provolatile::text AS volatility, p.prokind::text AS kind,
       (n.nspname = 'pg_catalog' AND p.oid < 16384) AS builtin,
       (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.refclassid = 'pg_extension'::regclass
          AND d.deptype = 'e' LIMIT 1) AS extension,
       a.aggtransfn::oid AS aggtransfn, a.aggfinalfn::oid AS aggfinalfn, a.aggcombinefn::oid AS aggcombinefn,
       a.aggserialfn::oid AS aggserialfn, a.aggdeserialfn::oid AS aggdeserialfn,
       a.aggmtransfn::oid AS aggmtransfn, a.aggminvtransfn::oid AS aggminvtransfn,
       a.aggmfinalfn::oid AS aggmfinalfn, a.aggsortop::oid AS aggsortop
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid
WHERE p.oid = ANY(%(oids)s)
