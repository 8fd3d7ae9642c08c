"""The `dbarch` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import DbarchError

EXIT_PROBLEM = 2


def _print(msg: str) -> None:
    print(msg, flush=True)


def _settings_from(args: argparse.Namespace) -> dict:
    keys = ("min_calls", "min_mean_ms", "top_n", "runs", "param_sets", "min_gain_pct", "max_indexes",
            "storage_budget_mb", "time_budget_s")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


# -- db ---------------------------------------------------------------------------------------------

def cmd_db(args: argparse.Namespace) -> int:
    from . import embedded

    if args.action == "start":
        st = embedded.start()
        _print(f"embedded PostgreSQL running (pid {st.pid}) on 127.0.0.1:{st.port}, data in {st.data_dir}")
        for name in embedded.DATABASES:
            _print(f"  {name:8} {st.url(name)}")
    elif args.action == "stop":
        embedded.stop()
        _print("embedded PostgreSQL stopped")
    elif args.action == "status":
        st = embedded.status()
        state = f"running (pid {st.pid})" if st.running else "stopped"
        _print(f"embedded PostgreSQL {state}; port {st.port}; data {st.data_dir}")
        return 0 if st.running else 3
    elif args.action == "url":
        _print(embedded.url(args.database))
    elif args.action == "reset":
        embedded.destroy()
        _print("embedded PostgreSQL stopped and its data folder deleted")
    return 0


# -- demo -----------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:

    from . import demo, embedded, report, run
    from .db import connect

    t0 = time.perf_counter()
    _print("1/4 starting the embedded PostgreSQL (pg_stat_statements preloaded, pgvector available)")
    st = embedded.start()
    _print(f"    running on 127.0.0.1:{st.port}, data in {st.data_dir}")
    target = embedded.url("demo")
    with connect(target, "target") as conn:
        if args.skip_load and _demo_loaded(conn):
            _print("2/4 demo data already loaded (--skip-load)")
        else:
            _print(f"2/4 loading the learning-platform demo ({args.rows:,} behaviour-log rows)")
            counts = demo.load(conn, demo.Scale(behavior_rows=args.rows), progress=_print)
            _print("    " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        _print("3/4 running the application's workload (parametrised reads, a few writes), between two "
               "captures of pg_stat_statements")
        instance = run.persistent_instance() if not args.ephemeral else None
        resources = run.audit_resources(settings=_settings_from(args))
        demo.reset_statistics(conn)
        run.capture_now(resources, instance=instance)
        demo.run_workload(conn, repeat=args.repeat, progress=_print, reset_stats=False)

    _print("4/4 materializing this week's audit through the Dagster asset graph")
    result = run.materialize_audit(resources, instance=instance, pull_requests=not args.no_pull_requests)
    with resources["store"].connect() as s:
        data = report.audit_result(s, target=resources["target"].target_name(),
                                   settings=resources["audit_settings"].settings())
    _print("")
    _print(report.format_report(data))
    _print_pull_requests(result)
    if args.json:
        _write_json(args.json, data)
    _print(f"done in {time.perf_counter() - t0:.0f}s (Dagster run {result.run_id}).")
    _print("See the lineage and this run in the Dagster UI: `make ui` (or `dbarch ui`), then open "
           "http://127.0.0.1:3000")
    _print("List the memory: `dbarch optimizations`;  nearest past fixes: `dbarch similar \"SELECT ...\"`")
    return 0


def _demo_loaded(conn) -> bool:
    row = conn.execute("SELECT to_regclass('public.behavior_log') IS NOT NULL").fetchone()
    return bool(row[0])


# -- audit ----------------------------------------------------------------------------------------

def cmd_audit(args: argparse.Namespace) -> int:
    from . import report, run

    resources = run.audit_resources(target_dsn=args.target_dsn, sandbox_dsn=args.sandbox_dsn,
                                    store_dsn=args.store_dsn, settings=_settings_from(args))
    run.preflight(resources)
    instance = None if args.ephemeral else run.persistent_instance()
    key = None
    if args.week:
        from .defs.partitions import audit_key, week_of

        key = audit_key(resources["target"].target_name(), week_of(_parse_day(args.week)))
    result = run.materialize_audit(resources, instance=instance, partition_key=key,
                                   pull_requests=not args.no_pull_requests)
    with resources["store"].connect() as s:
        data = report.audit_result(s, target=resources["target"].target_name(),
                                   settings=resources["audit_settings"].settings(),
                                   partition_key=str(key) if key else None)
    if data["slow_queries"] == 0:
        _print("no slow queries above the thresholds: nothing to optimize (lower --min-calls / "
               "--min-mean-ms to look further)")
    else:
        _print(report.format_report(data))
    _print_pull_requests(result)
    if args.json:
        _write_json(args.json, data)
    return 0


def _print_pull_requests(result) -> None:
    """What the pull-request step did, from its materialization's metadata."""
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == "optimization_pull_requests"]
    if not events:
        return
    meta = {k: v.value for k, v in events[0].materialization.metadata.items()}
    counts = ", ".join(f"{meta.get(k, 0)} {k}" for k in ("opened", "reopened", "updated", "unchanged")
                       if meta.get(k))
    _print(f"Pull requests ({meta.get('publisher')} -> {meta.get('destination')}): {counts or 'none eligible'}")
    for url in meta.get("urls") or []:
        _print(f"  {url}")
    if meta.get("push_commands"):
        _print("  to publish the local branches:")
        shown: set[str] = set()
        for line in str(meta["push_commands"]).splitlines():
            if line.strip() and not line.startswith("```") and line not in shown:
                shown.add(line)
                _print(f"    {line}")


def _parse_day(text: str):
    from datetime import datetime, timezone

    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    except ValueError:
        raise DbarchError(f"--week {text!r} is not a date", "give any day of the week as YYYY-MM-DD") from None


def _write_json(path: str, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str))
    _print(f"wrote {path}")


# -- memory ------------------------------------------------------------------------------------------

def _store(args: argparse.Namespace):
    from .resources.postgres import StoreDatabase

    return StoreDatabase(dsn=args.store_dsn or "")


def cmd_optimizations(args: argparse.Namespace) -> int:
    from .memory import store

    with _store(args).connect() as s:
        rows = store.list_optimizations(s, target=args.target, limit=args.limit)
    if args.json:
        _print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        _print("the optimization log is empty: run `dbarch demo` or `dbarch audit` first")
        return 0
    for r in rows:
        gain = f"{r['performance_gain']:.1f}%" if r["performance_gain"] is not None else "n/a"
        _print(f"{r['created_at']:%Y-%m-%d %H:%M}  [{r['target']}] {r['status']:8} gain {gain:>7}  "
               f"confidence {r['confidence'] or 0:.2f}  {r['ddl']}")
        _print(f"    {' '.join(r['query_text'].split())[:110]}")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from .memory import store
    from .memory.embeddings import Embedder
    from .memory.fingerprint import normalize

    vector = Embedder().embed_one(normalize(args.sql))
    with _store(args).connect() as s:
        rows = store.similar_optimizations(s, vector, limit=args.limit)
    if args.json:
        _print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        _print("no past optimizations yet")
    for r in rows:
        gain = f"{r['performance_gain']:.1f}%" if r["performance_gain"] is not None else "n/a"
        _print(f"similarity {r['similarity']:.3f}  gain {gain:>7}  confidence {r['confidence'] or 0:.2f}  {r['ddl']}")
        _print(f"    {' '.join(r['query_text'].split())[:110]}")
    return 0


# -- ui -----------------------------------------------------------------------------------------------

def cmd_ui(args: argparse.Namespace) -> int:
    from . import run
    from .settings import PROJECT_ROOT

    env = run.configure_dagster_env()
    _print(f"DAGSTER_HOME={env['DAGSTER_HOME']}; starting `dagster dev` on http://127.0.0.1:{args.port}")
    dagster = Path(sys.executable).with_name("dagster")
    os.chdir(PROJECT_ROOT)
    os.execv(str(dagster), [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)])
    return 0  # pragma: no cover


# -- parser -----------------------------------------------------------------------------------------

def _non_negative(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative: use 0 for no limit")
        return value
    return parse


def _thresholds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-calls", type=int, help="ignore statements called fewer times (default 5)")
    p.add_argument("--min-mean-ms", type=float, help="ignore statements faster on average (default 1 ms)")
    p.add_argument("--top-n", type=int, help="audit at most this many statements (default 20)")
    p.add_argument("--runs", type=int, help="timed runs per parameter set (default 5)")
    p.add_argument("--param-sets", type=int, help="parameter sets sampled per statement (default 4)")
    p.add_argument("--min-gain-pct", type=float, help="smallest measured gain worth recommending (default 10)")
    p.add_argument("--max-indexes", type=_non_negative(int), help="recommend at most this many indexes; proven "
                   "ones beyond it are listed as next in line (default 10, 0: no cap)")
    p.add_argument("--storage-budget-mb", type=_non_negative(float),
                   help="total size the recommended indexes may take (default 0: no budget)")
    p.add_argument("--time-budget", dest="time_budget_s", type=_non_negative(float), metavar="SECONDS",
                   help="stop measuring after this many seconds, keep the best found so far and name what "
                        "was skipped (default 0: no budget)")
    p.add_argument("--ephemeral", action="store_true", help="do not record the run in the Dagster instance")
    p.add_argument("--no-pull-requests", action="store_true",
                   help="skip the pull-request step (GitHub with GITHUB_TOKEN, else a local git branch)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbarch", description="AI database architect for PostgreSQL")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="manage the embedded PostgreSQL")
    p.add_argument("action", choices=["start", "stop", "status", "url", "reset"])
    p.add_argument("--database", default="demo", help="database for `url` (demo, dbarch, dagster)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("demo", help="load the demo app, run its workload, audit it, print the report")
    p.add_argument("--rows", type=int, default=1_200_000, help="behaviour-log rows (default 1,200,000)")
    p.add_argument("--repeat", type=float, default=1.0, help="workload size multiplier")
    p.add_argument("--skip-load", action="store_true", help="reuse already loaded demo data")
    p.add_argument("--json", help="also write the results as JSON to this path")
    _thresholds(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("audit", help="audit any database through the same assets")
    p.add_argument("--target-dsn", required=True, help="the audited database")
    p.add_argument("--store-dsn", help="dbarch's memory (default: the embedded server)")
    p.add_argument("--sandbox-dsn", help="where experiments run (default: the target, rolled back)")
    p.add_argument("--json", help="write the results as JSON to this path")
    p.add_argument("--week", help="audit the week holding this day (YYYY-MM-DD) from stored captures; "
                                  "default: the week in progress, with a fresh capture")
    _thresholds(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("optimizations", help="list the optimization log")
    p.add_argument("--target")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--store-dsn")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_optimizations)

    p = sub.add_parser("similar", help="nearest past optimizations to a SQL statement")
    p.add_argument("sql")
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--store-dsn")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the project's instance")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    from .ask.commands import register as register_ask
    from .metrics_cli import register as register_metrics

    register_ask(sub)
    register_metrics(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DbarchError as exc:
        print(f"dbarch: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
