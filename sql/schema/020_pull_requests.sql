-- Pull requests opened for OptimizationLog rows: where the reviewed change lives and what evidence it
-- showed, so a re-run updates that pull request instead of opening a second one, and a pull request
-- closed without merging is reopened only when the evidence has changed materially.
ALTER TABLE dbarch.optimization_log
    ADD COLUMN IF NOT EXISTS pr_url text,
    ADD COLUMN IF NOT EXISTS pr_state text,
    ADD COLUMN IF NOT EXISTS pr_number int,
    ADD COLUMN IF NOT EXISTS pr_branch text,
    ADD COLUMN IF NOT EXISTS pr_evidence_hash text,
    ADD COLUMN IF NOT EXISTS pr_updated_at timestamptz;
