-- Types a statement's values have, with what runs for them: a domain's CHECK expressions and base
-- type, a composite's column types, a range's subtype and functions, a type's I/O functions.
SELECT t.oid, n.nspname::text AS schema, format_type(t.oid, NULL) AS name, t.typtype::text AS kind,
       (n.nspname = 'pg_catalog' AND t.oid < 16384) AS builtin,
       (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.refclassid = 'pg_extension'::regclass
          AND d.deptype = 'e' LIMIT 1) AS extension,
       t.typbasetype::oid AS basetype, t.typelem::oid AS elem, t.typarray::oid AS array,
       ARRAY[t.typinput::oid, t.typoutput::oid, t.typreceive::oid, t.typsend::oid, t.typmodin::oid,
             t.typmodout::oid, t.typanalyze::oid, t.typsubscript::oid]::oid[] AS io,
       ARRAY(SELECT a.atttypid::oid FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
             AND NOT a.attisdropped)::oid[] AS fields,
       ARRAY(SELECT x FROM pg_range r, unnest(ARRAY[r.rngsubtype::oid, r.rngcanonical::oid, r.rngsubdiff::oid]) x
             WHERE r.rngtypid = t.oid)::oid[] AS range_parts,
       ARRAY(SELECT c.conbin::text FROM pg_constraint c
             WHERE c.contypid = t.oid AND c.contype = 'c') AS checks
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY(%(oids)s)
