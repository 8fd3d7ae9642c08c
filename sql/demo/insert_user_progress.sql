-- Progress: heavy learners (low rank) have many lessons; power(random(), 2) skews towards them.
INSERT INTO user_progress (user_id, lesson_id, status, progress_pct, updated_at)
SELECT u.id, 1 + (g * 48271 %% %(n_lessons)s),
       CASE WHEN r < 0.55 THEN 'completed' WHEN r < 0.85 THEN 'in_progress' ELSE 'not_started' END,
       CASE WHEN r < 0.55 THEN 100 ELSE (r * 100)::int END,
       %(now)s::timestamptz - make_interval(secs => (g * 104729 %% 31536000))
FROM (SELECT g, random() AS r,
             1 + floor(power(random(), 2) * %(n_users)s)::bigint AS rn
      FROM generate_series(1::bigint, %(n_rows)s::bigint) AS g) s
JOIN user_rank u USING (rn)
