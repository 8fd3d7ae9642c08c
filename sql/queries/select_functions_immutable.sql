-- True when every function of these names is immutable (every overload), so an index expression calling
-- them is accepted; used only where a rolled-back CREATE INDEX cannot be tried.
SELECT coalesce(bool_and(p.provolatile = 'i'), false)
FROM pg_proc p
WHERE p.proname = ANY(%(names)s::text[])
