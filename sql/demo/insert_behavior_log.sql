-- Behaviour logs: a Zipf-like share of events per user (power(random(), 3)), page views dominate,
-- purchases are rare; timestamps over the last 180 days.
INSERT INTO behavior_log (user_id, event_type, metadata, "timestamp")
SELECT u.id,
       CASE WHEN r < 0.60 THEN 'page_view' WHEN r < 0.75 THEN 'lesson_start'
            WHEN r < 0.85 THEN 'lesson_complete' WHEN r < 0.93 THEN 'quiz_submit'
            WHEN r < 0.99 THEN 'login' ELSE 'purchase' END,
       jsonb_build_object('path', '/lesson/' || (g %% 4000), 'device',
                          (ARRAY['web', 'ios', 'android'])[1 + g %% 3], 'ms', (r * 3000)::int),
       %(now)s::timestamptz - make_interval(secs => (g * 15485863 %% 15552000))
FROM (SELECT g, random() AS r,
             1 + floor(power(random(), 3) * %(n_users)s)::bigint AS rn
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) s
JOIN user_rank u USING (rn)
