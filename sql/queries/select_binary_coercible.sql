-- Whether a cast from one type to another changes no bits (same type, or pg_cast's binary method):
-- an index on the column then serves a condition on the cast column.
SELECT %(source)s::regtype = %(target)s::regtype
    OR EXISTS (SELECT 1 FROM pg_cast
               WHERE castsource = %(source)s::regtype AND casttarget = %(target)s::regtype AND castmethod = 'b')
