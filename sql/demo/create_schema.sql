-- The demo application: the seeds' learning platform (users, behavior logs, courses, lessons,
-- progress). Only primary keys, unique constraints and the timestamp index exist, as in the seeds'
-- Prisma schema before anyone tuned it; the workload will miss some indexes.
DROP TABLE IF EXISTS behavior_log, user_progress, lessons, courses, users CASCADE;

CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL UNIQUE,
    name       jsonb,
    country    text NOT NULL,
    plan       text NOT NULL DEFAULT 'free',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE courses (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug       text NOT NULL UNIQUE,
    title      jsonb NOT NULL,
    category   text NOT NULL,
    level      text NOT NULL,
    published  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lessons (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id    bigint NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position     int    NOT NULL,
    title        text   NOT NULL,
    duration_min int    NOT NULL
);

CREATE TABLE user_progress (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lesson_id    bigint NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    status       text   NOT NULL,
    progress_pct int    NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE behavior_log (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    metadata    jsonb,
    "timestamp" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX behavior_log_timestamp_idx ON behavior_log ("timestamp");
