-- `dbarch targets remove` without --purge: no longer audited, its history kept.
UPDATE dbarch.target SET scheduled = false, retired_at = now()
WHERE name = %(name)s AND retired_at IS NULL
