-- One current recommendation per target and statement. A re-run supersedes the proposed rows it did
-- not choose again: they stay for history (status 'superseded', superseded_at) and no reader shows
-- them as current. applied: the index exists on the target or its pull request was merged;
-- declined: a person declined it; rejected: its pull request was closed without merging.
ALTER TABLE dbarch.optimization_log ADD COLUMN IF NOT EXISTS superseded_at timestamptz;

-- rows written before statuses were enforced: of several proposed rows of one statement, only the
-- most recently written stays current
UPDATE dbarch.optimization_log o
SET status = 'superseded', superseded_at = now()
WHERE o.status = 'proposed'
  AND EXISTS (SELECT 1 FROM dbarch.optimization_log n
              WHERE n.target = o.target AND n.fingerprint = o.fingerprint AND n.kind = o.kind
                AND n.status = 'proposed' AND (n.updated_at, n.id) > (o.updated_at, o.id));
UPDATE dbarch.optimization_log SET status = 'proposed'
WHERE status NOT IN ('proposed', 'superseded', 'applied', 'declined', 'rejected');

ALTER TABLE dbarch.optimization_log DROP CONSTRAINT IF EXISTS optimization_log_status_check;
ALTER TABLE dbarch.optimization_log ADD CONSTRAINT optimization_log_status_check
    CHECK (status IN ('proposed', 'superseded', 'applied', 'declined', 'rejected'));
CREATE INDEX IF NOT EXISTS optimization_log_current_idx ON dbarch.optimization_log (target, fingerprint)
    WHERE status <> 'superseded';
