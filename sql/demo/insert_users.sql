-- Users: most from Vietnam, then a long tail of countries; sign-ups spread over two years.
INSERT INTO users (email, name, country, plan, created_at)
SELECT 'user' || g || '@example.' || (ARRAY['com', 'vn', 'edu'])[1 + g %% 3],
       jsonb_build_object('vi', 'Người dùng ' || g, 'en', 'User ' || g, 'zh', '用户 ' || g),
       CASE WHEN r < 0.50 THEN 'VN' WHEN r < 0.65 THEN 'US' WHEN r < 0.75 THEN 'SG'
            WHEN r < 0.83 THEN 'JP' WHEN r < 0.90 THEN 'DE' ELSE 'country-' || (g %% 40) END,
       CASE WHEN g %% 10 = 0 THEN 'pro' ELSE 'free' END,
       %(now)s::timestamptz - make_interval(secs => (g * 7919 %% 63072000))
FROM (SELECT g, random() AS r FROM generate_series(1::bigint, %(n_users)s::bigint) AS g) s
