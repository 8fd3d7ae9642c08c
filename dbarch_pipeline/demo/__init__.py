"""The demo application: the seeds' learning platform, its data and its workload."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import psycopg
from psycopg import sql

from ..settings import SQL_DIR

Progress = Callable[[str], None]
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)  # fixed, so every demo has the same data


def _demo_sql(name: str) -> sql.SQL:
    return sql.SQL((SQL_DIR / "demo" / f"{name}.sql").read_text())


@dataclass(frozen=True)
class Scale:
    behavior_rows: int = 1_200_000

    @property
    def users(self) -> int:
        return max(2_000, self.behavior_rows // 20)

    @property
    def courses(self) -> int:
        return 200

    @property
    def lessons_per_course(self) -> int:
        return 20

    @property
    def progress_rows(self) -> int:
        return self.users * 5


def load(conn: psycopg.Connection, scale: Scale = Scale(), progress: Progress = print) -> dict[str, int]:
    """(Re)create the demo schema and fill it; returns row counts. The connection is autocommit."""
    started = time.perf_counter()
    conn.execute(_demo_sql("create_schema"))
    steps = [
        ("users", "insert_users", {"n_users": scale.users}),
        ("courses", "insert_courses", {"n_courses": scale.courses}),
        ("lessons", "insert_lessons", {"lessons_per_course": scale.lessons_per_course}),
    ]
    for label, name, params in steps:
        t = time.perf_counter()
        conn.execute(_demo_sql(name), {"now": NOW, **params})
        progress(f"  loaded {label} ({time.perf_counter() - t:.1f}s)")
    conn.execute(_demo_sql("create_user_ranks"))
    t = time.perf_counter()
    conn.execute(_demo_sql("insert_user_progress"), {
        "now": NOW, "n_users": scale.users, "n_rows": scale.progress_rows,
        "n_lessons": scale.courses * scale.lessons_per_course})
    progress(f"  loaded user_progress: {scale.progress_rows:,} rows ({time.perf_counter() - t:.1f}s)")

    chunk = 200_000
    done = 0
    t = time.perf_counter()
    while done < scale.behavior_rows:
        last = min(scale.behavior_rows, done + chunk)
        conn.execute(_demo_sql("insert_behavior_log"), {
            "now": NOW, "n_users": scale.users, "first": done + 1, "last": last})
        done = last
        progress(f"  loading behavior_log: {done:,}/{scale.behavior_rows:,} rows "
                 f"({time.perf_counter() - t:.1f}s)")
    conn.execute("DROP TABLE user_rank")
    t = time.perf_counter()
    conn.execute("VACUUM ANALYZE")
    progress(f"  vacuum + analyze ({time.perf_counter() - t:.1f}s); data loaded in "
             f"{time.perf_counter() - started:.1f}s")
    counts = {}
    for table in ("users", "courses", "lessons", "user_progress", "behavior_log"):
        counts[table] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    return counts


# -- workload ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkloadQuery:
    name: str
    text: str           # psycopg %s placeholders: sent as $n, so pg_stat_statements normalizes them
    calls: int
    expect: str         # what an advisor should conclude, for the report and the tests


WORKLOAD = [
    WorkloadQuery("recent_user_events",
                  'SELECT id, event_type, metadata, "timestamp" FROM behavior_log '
                  'WHERE user_id = %s ORDER BY "timestamp" DESC LIMIT %s', 40,
                  "missing behavior_log (user_id, timestamp)"),
    WorkloadQuery("user_event_count",
                  "SELECT count(*) FROM behavior_log WHERE user_id = %s AND event_type = %s", 20,
                  "missing behavior_log (user_id, event_type)"),
    WorkloadQuery("user_progress_page",
                  "SELECT l.title, p.status, p.progress_pct FROM user_progress p "
                  "JOIN lessons l ON l.id = p.lesson_id WHERE p.user_id = %s ORDER BY p.updated_at DESC", 40,
                  "missing user_progress (user_id)"),
    WorkloadQuery("login_by_email",
                  "SELECT id, name, plan FROM users WHERE lower(email) = lower(%s)", 30,
                  "missing expression index users (lower(email))"),
    WorkloadQuery("user_by_email", "SELECT id, name, plan FROM users WHERE email = %s", 60,
                  "fine: unique index on email"),
    WorkloadQuery("events_last_hour",
                  'SELECT event_type, count(*) FROM behavior_log WHERE "timestamp" >= %s AND "timestamp" < %s '
                  "GROUP BY event_type", 30, "fine: behavior_log_timestamp_idx"),
    WorkloadQuery("event_totals", "SELECT event_type, count(*) FROM behavior_log GROUP BY event_type", 6,
                  "full-table aggregate: no index helps"),
    WorkloadQuery("course_lessons",
                  "SELECT id, title, position FROM lessons WHERE course_id = %s ORDER BY position", 60,
                  "small table: not worth an index"),
    WorkloadQuery("signups_by_country",
                  "SELECT count(*) FROM users WHERE country = %s AND created_at >= %s", 20,
                  "candidate users (country, created_at)"),
    WorkloadQuery("log_event",
                  "INSERT INTO behavior_log (user_id, event_type, metadata) VALUES (%s, %s, %s)", 200,
                  "write"),
    WorkloadQuery("save_progress",
                  "UPDATE user_progress SET progress_pct = %s, updated_at = now() WHERE id = %s", 100,
                  "write"),
]


def _samples(conn: psycopg.Connection, rng: random.Random) -> dict[str, list]:
    """Real values to call the workload with (users weighted by their activity, like real traffic)."""
    active = [r[0] for r in conn.execute(
        "SELECT user_id FROM behavior_log TABLESAMPLE SYSTEM (1) REPEATABLE (3) LIMIT 500")]
    if not active:
        active = [r[0] for r in conn.execute("SELECT user_id FROM behavior_log LIMIT 500")]
    emails = [r[0] for r in conn.execute("SELECT email FROM users TABLESAMPLE BERNOULLI (5) LIMIT 300")]
    progress_ids = [r[0] for r in conn.execute("SELECT id FROM user_progress LIMIT 2000")]
    courses = [r[0] for r in conn.execute("SELECT id FROM courses")]
    rng.shuffle(progress_ids)
    return {"users": active, "emails": emails, "progress": progress_ids, "courses": courses}


def _args(q: WorkloadQuery, s: dict[str, list], rng: random.Random) -> tuple:
    user = rng.choice(s["users"])
    match q.name:
        case "recent_user_events":
            return (user, 50)
        case "user_event_count":
            return (user, rng.choice(["page_view", "lesson_complete", "purchase"]))
        case "user_progress_page":
            return (user,)
        case "login_by_email":
            return (rng.choice(s["emails"]).upper(),)
        case "user_by_email":
            return (rng.choice(s["emails"]),)
        case "events_last_hour":
            start = NOW - timedelta(hours=rng.randint(1, 24 * 90))
            return (start, start + timedelta(hours=1))
        case "course_lessons":
            return (rng.choice(s["courses"]),)
        case "signups_by_country":
            return (rng.choice(["VN", "US", "SG", "JP", "country-7"]), NOW - timedelta(days=rng.randint(1, 60)))
        case "log_event":
            return (user, "page_view", psycopg.types.json.Jsonb({"path": "/home", "device": "web"}))
        case "save_progress":
            return (rng.randint(0, 100), rng.choice(s["progress"]))
    return ()


def reset_statistics(conn: psycopg.Connection) -> None:
    """Start statement and table counters together, so calls and writes cover the same window (the
    bulk load would otherwise count as write traffic). Only this database's counters are reset."""
    conn.execute("SELECT pg_stat_force_next_flush()")  # the load's own counters first
    conn.execute("SELECT 1")
    conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                 "WHERE datname = current_database()), 0)")
    conn.execute("SELECT pg_stat_reset()")


def run_workload(conn: psycopg.Connection, *, repeat: float = 1.0, seed: int = 11,
                 progress: Progress = print, reset_stats: bool = True) -> dict[str, float]:
    """Run the demo workload once (calls x repeat), interleaved like real traffic; returns seconds
    spent per query. Resets this database's pg_stat_statements first so the audit sees only it."""
    rng = random.Random(seed)
    samples = _samples(conn, rng)
    if reset_stats:
        reset_statistics(conn)
    plan = [q for q in WORKLOAD for _ in range(max(1, round(q.calls * repeat)))]
    rng.shuffle(plan)
    spent: dict[str, float] = {q.name: 0.0 for q in WORKLOAD}
    started = last_report = time.perf_counter()
    for i, q in enumerate(plan, 1):
        t = time.perf_counter()
        with conn.transaction():
            conn.execute(q.text, _args(q, samples, rng)).fetchall() if q.text.lstrip().upper().startswith(
                "SELECT") else conn.execute(q.text, _args(q, samples, rng))
        spent[q.name] += time.perf_counter() - t
        if time.perf_counter() - last_report > 3 or i == len(plan):
            last_report = time.perf_counter()
            progress(f"  workload: {i}/{len(plan)} statements ({last_report - started:.1f}s)")
    return spent
