-- Which of these function names PostgreSQL itself defines (schema pg_catalog). Functions a database
-- defines may do anything, so generated SQL may call only built-ins (the side-effect ones are
-- refused by name before this) and the functions the user allows.
SELECT DISTINCT p.proname::text AS name
FROM pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
  AND p.proname = ANY(%(names)s)
