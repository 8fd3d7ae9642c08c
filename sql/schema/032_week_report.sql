-- The week's report as the audit wrote it (markdown and JSON), so `dbarch report` prints it again
-- without re-auditing, and without re-deriving it under other settings.
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS report_md text;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS report jsonb;
ALTER TABLE dbarch.snapshot ADD COLUMN IF NOT EXISTS reported_at timestamptz;
