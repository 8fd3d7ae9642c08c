-- Hand-designed indexes for the demo workload: what an expert would create after reading the
-- statements and the data, the reference the other configurations are compared with.
-- recent_user_events: equality on user_id, then the ORDER BY ... LIMIT column
CREATE INDEX hand_behavior_log_user_ts ON behavior_log (user_id, "timestamp");
-- user_event_count: both equalities; count(*) becomes an index-only scan
CREATE INDEX hand_behavior_log_user_event ON behavior_log (user_id, event_type);
-- user_progress_page: the unindexed foreign key the page filters on
CREATE INDEX hand_user_progress_user ON user_progress (user_id);
-- login_by_email: the expression the statement compares
CREATE INDEX hand_users_lower_email ON users (lower(email));
-- signups_by_country: equality, then the range
CREATE INDEX hand_users_country_created ON users (country, created_at);
