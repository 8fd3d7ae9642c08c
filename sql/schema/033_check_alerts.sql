-- WARN check failures posted to the alert webhook: once per target, week and check, whichever run
-- (re-run, backfill, spike) fails it again.
CREATE TABLE IF NOT EXISTS dbarch.check_alert (
    target     text NOT NULL,
    week       text NOT NULL,
    check_name text NOT NULL,
    run_id     text,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, week, check_name)
);
