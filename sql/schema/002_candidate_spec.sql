-- Candidates carry their full specification (method, operator classes, INCLUDE, partial predicate).
ALTER TABLE dbarch.index_candidate ADD COLUMN IF NOT EXISTS spec jsonb;
