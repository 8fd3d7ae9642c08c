-- an alert that could not be delivered: the next run tries again
DELETE FROM dbarch.check_alert WHERE target = %(target)s AND week = %(week)s AND check_name = %(check_name)s
