INSERT INTO lessons (course_id, position, title, duration_min)
SELECT c.id, p, 'Lesson ' || p || ' of ' || c.slug, 5 + (c.id * p) %% 25
FROM courses c, generate_series(1, %(lessons_per_course)s) AS p
