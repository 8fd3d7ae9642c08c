-- Documents of refreshed sources that the refresh did not produce again (dropped tables, removed
-- chunks or examples).
DELETE FROM dbarch.ask_document
WHERE target = %(target)s AND kind = %(kind)s AND source = ANY(%(sources)s) AND NOT (key = ANY(%(keep)s))
