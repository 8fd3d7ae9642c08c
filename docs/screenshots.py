"""Three weeks of one target in a fresh Dagster instance, for the screenshots in docs/.

A small `items` table (60k rows, stored in an order unrelated to created_at) whose labels come in
blocks along created_at: an index on created_at, proposed for the newest-first listing, can make the
per-label listing walk the index through random heap pages (a regression the benchmark measures and
names, when the planner takes that path). Each week's captures are dated in that week, the
workload grows, and each week is audited from the stored captures through the real asset graph.
Then the webserver serves the instance and Debian's headless Chromium (driven by Playwright, which
`pip install playwright` adds; no browser is downloaded) takes the pictures.

Run: DBARCH_HOME=... DBARCH_PG_PORT=... .venv/bin/python docs/screenshots.py [--port 3011] [--shoot-only]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
NEWEST = "SELECT id, label FROM items ORDER BY created_at DESC LIMIT %s"
BY_LABEL = "SELECT id, created_at FROM items WHERE label = %s ORDER BY created_at LIMIT 10"
BY_OWNER = "SELECT id, label FROM items WHERE owner = %s"


def _work(url: str, rng: random.Random, scale: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(6 * scale):
            conn.execute(NEWEST, (20,)).fetchall()
            conn.execute(BY_LABEL, (f"L{rng.randrange(60)}",)).fetchall()
            conn.execute(BY_OWNER, (rng.randrange(3000),)).fetchall()


def build(port: int) -> tuple[dict, str]:
    from dbarch_pipeline import embedded, history, run
    from dbarch_pipeline.defs.partitions import last_complete_week, window
    from dbarch_pipeline.resources.postgres import StoreDatabase

    embedded.start()
    target = embedded.recreate_database("dbarch_shots_shop")
    store = embedded.recreate_database("dbarch_shots_store", pg_stat_statements=False)
    dagster_db = embedded.recreate_database("dbarch_shots_dagster", pg_stat_statements=False)
    env = _env()
    os.environ.update(env)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, owner int NOT NULL, label text NOT NULL, "
                     "created_at timestamptz NOT NULL)")
        # rows stored in an order unrelated to created_at (a permutation of g): walking an index on
        # created_at fetches heap pages at random; labels come in blocks along created_at
        conn.execute("INSERT INTO items SELECT g, g % 3000, 'L' || (p / 1000), "
                     "timestamptz '2026-01-01' + p * interval '1 minute' "
                     "FROM generate_series(1, 60000) g, LATERAL (SELECT (g * 7919) % 60000 AS p) x")
        conn.execute("VACUUM ANALYZE items")
        conn.execute("SELECT pg_stat_reset()")
    instance = run.persistent_instance()
    resources = run.audit_resources(settings={"runs": 3, "param_sets": 3, "min_calls": 3, "min_mean_ms": 0.3})
    rng = random.Random(11)
    last = last_complete_week(datetime.now(timezone.utc))
    weeks = [(datetime.fromisoformat(last) - timedelta(days=7 * i)).date().isoformat() for i in (2, 1, 0)]
    for i, week in enumerate(weeks):
        start, _ = window(week)
        with psycopg.connect(target, autocommit=True) as t, StoreDatabase(dsn=store).connect() as s:
            history.capture(t, s, target="shop", now=start + timedelta(hours=1))
        _work(target, rng, 1 + i)
        with psycopg.connect(target, autocommit=True) as t, StoreDatabase(dsn=store).connect() as s:
            history.capture(t, s, target="shop", now=start + timedelta(days=3))
        from dbarch_pipeline.defs.partitions import audit_key, register_weeks

        register_weeks(instance, start + timedelta(hours=1))
        result = run.materialize_audit(resources, instance=instance, partition_key=audit_key("shop", week))
        print(f"week {week}: run {result.run_id} success={result.success}", flush=True)
    return env, weeks[-1]


def shoot(base: str, week: str, out: Path) -> None:
    """Debian's headless Chromium, driven by Playwright (clicks are needed: the report opens from
    its [Show Markdown] link, the plots from the Overview's Plots toggle)."""
    from playwright.sync_api import sync_playwright

    key = urllib.parse.quote(f"shop|{week}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 1150})

        def open_(path: str, wait_for: str) -> None:
            page.goto(f"{base}{path}", wait_until="networkidle", timeout=180_000)
            page.get_by_text(wait_for).first.wait_for(timeout=120_000)
            time.sleep(2)

        # the week's report: first entry of the partition's materialization, opened
        open_(f"/assets/optimization_log?view=events&partition={key}", "[Show Markdown]")
        page.get_by_text("[Show Markdown]").first.click()
        time.sleep(2)
        page.screenshot(path=str(out / "week_report.png"))
        page.keyboard.press("Escape")
        # the slow statements of that week, as a table
        open_(f"/assets/slow_query_snapshot?view=events&partition={key}", "slow_statements")
        page.get_by_text("slow_statements").first.scroll_into_view_if_needed()
        page.screenshot(path=str(out / "slow_statements.png"))
        # candidates x statements, before/after, regressions named
        page.set_viewport_size({"width": 2000, "height": 1150})   # every column, the regression flag too
        open_(f"/assets/benchmarked_gains?view=events&partition={key}", "benchmarks")
        page.screenshot(path=str(out / "benchmarks.png"))
        page.set_viewport_size({"width": 1500, "height": 1150})
        # the plots over the three weeks of the target
        open_("/assets/optimization_log", "Plots")
        page.get_by_text("Plots", exact=True).first.click()
        time.sleep(4)
        page.screenshot(path=str(out / "plots.png"), full_page=True)
        browser.close()
    for name in ("week_report", "slow_statements", "benchmarks", "plots"):
        print(f"wrote {out / name}.png", flush=True)


def _env() -> dict:
    from dbarch_pipeline import embedded

    home = tempfile.mkdtemp(prefix="dbarch-shots-")
    shutil.copyfile(ROOT / "dagster.yaml", Path(home) / "dagster.yaml")
    return {"DAGSTER_HOME": home,
            "DAGSTER_PG_URL": embedded.url("dbarch_shots_dagster").replace("postgresql://", "postgresql+psycopg2://"),
            "DBARCH_TARGET_DSN": embedded.url("dbarch_shots_shop"), "DBARCH_STORE_DSN": embedded.url("dbarch_shots_store"),
            "DBARCH_TARGET_NAME": "shop"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3011)
    parser.add_argument("--shoot-only", action="store_true", help="reuse the instance built by an earlier run")
    args = parser.parse_args()
    if args.shoot_only:
        from dbarch_pipeline.defs.partitions import last_complete_week

        env, week = _env(), last_complete_week(datetime.now(timezone.utc))
    else:
        env, week = build(args.port)
    web = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
                            "-h", "127.0.0.1", "-p", str(args.port)], cwd=ROOT, env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(2)
        shoot(base, week, ROOT / "docs")
    finally:
        web.terminate()
        web.wait(timeout=30)


if __name__ == "__main__":
    main()
