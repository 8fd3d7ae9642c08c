-- What an applied index really did to its statement's mean time, from the captures.
UPDATE dbarch.optimization_log
SET realized_gain = %(realized_gain)s,
    realized_at = %(realized_at)s,
    updated_at = now()
WHERE id = %(id)s::uuid
