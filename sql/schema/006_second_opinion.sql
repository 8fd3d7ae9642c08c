-- Gemini's second opinion per statement (ideas accepted and refused, with reasons), kept beside the
-- candidates it produced; nothing here ever sets a confidence.
ALTER TABLE dbarch.index_candidate ADD COLUMN IF NOT EXISTS second_opinion jsonb NOT NULL DEFAULT '{}';
