-- The open pull requests of current recommendations (GitHub: they have a number), one row each, so
-- a review (merged, closed without merging) can be read back.
SELECT target, pr_number, min(pr_url) AS pr_url, min(pr_branch) AS pr_branch
FROM dbarch.optimization_log
WHERE status <> 'superseded'
  AND pr_state = 'open'
  AND pr_number IS NOT NULL
GROUP BY target, pr_number
ORDER BY target, pr_number
