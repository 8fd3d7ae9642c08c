-- A dense numbering of users so that rows can pick a user with a skewed distribution.
CREATE TEMP TABLE user_rank AS
SELECT row_number() OVER (ORDER BY created_at, id) AS rn, id FROM users
