INSERT INTO courses (slug, title, category, level, created_at)
SELECT 'course-' || g,
       jsonb_build_object('en', 'Course ' || g, 'vi', 'Khoá học ' || g),
       (ARRAY['finance', 'investing', 'budgeting', 'crypto', 'tax'])[1 + g %% 5],
       (ARRAY['beginner', 'intermediate', 'advanced'])[1 + g %% 3],
       %(now)s::timestamptz - make_interval(days => g %% 700)
FROM generate_series(1, %(n_courses)s) AS g
