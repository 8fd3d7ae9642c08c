-- A pull request closed without merging makes its recommendation 'rejected': when, and by whom (the
-- GitHub login that closed it). A superseded recommendation's pull request closed by dbarch itself
-- keeps its status (superseded) and records pr_state 'closed'.
ALTER TABLE dbarch.optimization_log ADD COLUMN IF NOT EXISTS rejected_at timestamptz;
ALTER TABLE dbarch.optimization_log ADD COLUMN IF NOT EXISTS rejected_by text;
CREATE INDEX IF NOT EXISTS optimization_log_open_pr_idx ON dbarch.optimization_log (target, pr_number)
    WHERE pr_state IN ('open', 'local');
