SELECT DISTINCT target FROM dbarch.snapshot WHERE report_md IS NOT NULL ORDER BY target
