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
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    from .bench.observed import cli_settings

    return {**out, **cli_settings(args)}


# -- db ---------------------------------------------------------------------------------------------

def cmd_db(args: argparse.Namespace) -> int:
    from . import embedded

    if args.action == "start":
        st = embedded.start()
        _print(f"embedded PostgreSQL running (pid {st.pid}) on 127.0.0.1:{st.port}, data in {st.data_dir}")
        for name in embedded.DATABASES:
            _print(f"  {name:8} {st.url(name)}")
    elif args.action == "stop":
        from . import warm_similar

        if warm_similar.stop():
            _print("warm `dbarch similar` process stopped")
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
        from . import warm_similar

        warm_similar.stop()
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
    from . import report, run, targets
    from .db import connect

    # the command line's own mistakes first, before anything connects
    settings = _settings_from(args)
    day = _parse_day(args.week) if args.week else None
    # what the schedules audit, before this command line's DSNs are put in the environment
    scheduled = run.scheduled_names(args.store_dsn)
    with connect(args.target_dsn, "target") as t, run.audit_resources(store_dsn=args.store_dsn)["store"].connect() as s:
        # the readable name of this database: registered, else its name, else <name>@<server> when
        # another server's database holds that name
        name = targets.name_for(s, targets.identify(t), args.name)
    resources = run.audit_resources(target_dsn=args.target_dsn, sandbox_dsn=args.sandbox_dsn,
                                    store_dsn=args.store_dsn, settings=settings, target_name=name)
    from .resources.postgres import with_generated_sql_role

    resources = with_generated_sql_role(resources, args.read_only_role, args.accept_superuser_risk)
    run.preflight(resources)
    instance = None if args.ephemeral else run.persistent_instance()
    key = None
    if day is not None:
        from .defs.partitions import audit_key, week_of

        key = audit_key(name, week_of(day))
    try:
        result = run.materialize_audit(resources, instance=instance, partition_key=key,
                                       pull_requests=not args.no_pull_requests)
    finally:
        if instance is not None and run.forget_one_off(instance, name, scheduled):
            _print(f"(one-off audit of {name}: nothing scheduled for it; `dbarch targets add {name} --dsn-env VAR` "
                   "audits it every week)")
    with resources["store"].connect() as s:
        data = report.audit_result(s, target=name, settings=resources["audit_settings"].settings(),
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

class _Store:
    """The store without importing Dagster (a second of start-up the read-only commands need not
    pay): the same precedence as StoreDatabase, --store-dsn > $DBARCH_STORE_DSN > the embedded server."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def resolved_dsn(self) -> str:
        """The DSN connect() uses, without importing a driver or starting anything: for the embedded
        default, its URL (connect() starts the server when it is down)."""
        from .settings import STORE_DSN_ENV, env_dsn

        if self.dsn or env_dsn(STORE_DSN_ENV):
            return self.dsn or env_dsn(STORE_DSN_ENV) or ""
        from . import embedded

        return embedded.url("dbarch")

    def connect(self):
        from contextlib import contextmanager

        from . import db, embedded
        from .memory import store
        from .settings import STORE_DSN_ENV, env_dsn

        @contextmanager
        def opened():
            dsn = self.dsn or env_dsn(STORE_DSN_ENV)
            if not dsn:
                embedded.ensure_running()
                dsn = embedded.url("dbarch")
            with db.connect(dsn, "store") as conn:
                store.ensure_schema(conn)
                yield conn
        return opened()


def _store(args: argparse.Namespace) -> _Store:
    return _Store(args.store_dsn or "")


def cmd_optimizations(args: argparse.Namespace) -> int:
    from .memory import store
    from . import targets

    with _store(args).connect() as s:
        if args.decline:
            import uuid

            try:
                uuid.UUID(args.decline)
            except ValueError:
                raise DbarchError(f"{args.decline!r} is not a recommendation id", "copy an id from "
                                  "`dbarch optimizations --json`") from None
            done = store.decline(s, args.decline)
            if done is None:
                raise DbarchError(f"no proposed recommendation with id {args.decline}",
                                  "only proposed rows can be declined; see `dbarch optimizations --json`")
            _print(f"declined [{done['target']}] {done['ddl']}: never published, kept declined by later runs")
            return 0
        if args.target:
            targets.require_known(s, args.target)
        rows = store.list_optimizations(s, target=args.target, limit=args.limit, history=args.history)
    if args.json:
        _print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        _print("the optimization log is empty: run `dbarch demo` or `dbarch audit` first")
        return 0
    for r in rows:
        gain = f"{r['performance_gain']:.1f}%" if r["performance_gain"] is not None else "n/a"
        _print(f"{r['created_at']:%Y-%m-%d %H:%M}  [{r['target']}] {r['status']:10} gain {gain:>7}  "
               f"confidence {r['confidence'] or 0:.2f}  {r['ddl']}")
        _print(f"    {' '.join(r['query_text'].split())[:110]}")
        notes = (r.get("evidence") or {}).get("confidence_notes") or []
        if notes:
            # why the confidence is what it is (a side effect, guessed values, ...), as the PR body says
            _print(f"    confidence: {'; '.join(notes)}")
        if r.get("pr_url"):
            _print(f"    pull request: {r['pr_url']}")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from . import warm_similar

    store = _store(args)
    dsn = store.resolved_dsn()
    found = warm_similar.similar(dsn, args.sql, limit=args.limit, min_similarity=args.min_similarity,
                                 target=args.target, history=args.history) if dsn else None
    if found is not None and "problem" in found:
        raise DbarchError(found["problem"], found["fix"])
    if found is None:
        from . import similar

        with store.connect() as s:
            found = similar.search(s, args.sql, limit=args.limit, min_similarity=args.min_similarity,
                                   target=args.target, history=args.history)
        warm_similar.start_in_background()   # the next call skips the imports and the model load
    rows = found["rows"]
    if args.json:
        _print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        _print(f"no past optimization at similarity {args.min_similarity:g} or more")
    for r in rows:
        gain = f"{r['performance_gain']:.1f}%" if r["performance_gain"] is not None else "n/a"
        realized = f"  realized {r['realized_gain']:.1f}%" if r.get("realized_gain") is not None else ""
        serves = "" if r["serves"] else "  (cannot serve this statement)"
        _print(f"similarity {r['similarity']:.3f}  [{r['target']}] {r['status']:10} gain {gain:>7}{realized}  "
               f"confidence {r['confidence'] or 0:.2f}  {r['ddl']}{serves}")
        _print(f"    {' '.join(r['query_text'].split())[:110]}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """A stored week report, printed again: nothing is audited or measured."""
    from . import targets
    from .defs.partitions import week_of
    from .memory import store

    week_start = None
    if args.week:
        from datetime import datetime

        week_start = datetime.fromisoformat(week_of(_parse_day(args.week))).replace(tzinfo=_parse_day(args.week).tzinfo)
    with _store(args).connect() as s:
        name = args.target
        if name is None:
            from .db import named

            reported = [r[0] for r in s.execute(named("select_reported_targets"))]
            if len(reported) != 1:
                raise DbarchError("name the target: " + (f"reports exist for {', '.join(reported)}" if reported
                                                         else "no stored report yet"),
                                  "dbarch report --target NAME (see `dbarch targets list`); audit first if none")
            name = reported[0]
        targets.require_known(s, name)
        row = store.stored_report(s, name, week_start)
    if row is None:
        week = f" for the week of {week_start.date()}" if week_start else ""
        raise DbarchError(f"no stored report of {name}{week}",
                          "audit that week first (`dbarch audit --week YYYY-MM-DD`, or materialize its partition)")
    if args.format == "json":
        _print(json.dumps(row["report"], indent=2, default=str))
    else:
        _print(row["report_md"])
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
                   "ones beyond it are listed as next in line (default 0: no cap; each index must save more than its write upkeep)")
    p.add_argument("--storage-budget-mb", type=_non_negative(float),
                   help="total size the recommended indexes may take (default 0: no budget)")
    p.add_argument("--time-budget", dest="time_budget_s", type=_non_negative(float), metavar="SECONDS",
                   help="stop measuring after this many seconds, keep the best found so far and name what "
                        "was skipped (default 0: no budget)")
    p.add_argument("--ephemeral", action="store_true", help="do not record the run in the Dagster instance")
    p.add_argument("--no-pull-requests", action="store_true",
                   help="skip the pull-request step (GitHub with GITHUB_TOKEN, else a local git branch)")
    from .bench.observed import add_cli_flags

    add_cli_flags(p)


def _register_similar(sub) -> None:
    p = sub.add_parser("similar", help="nearest past optimizations to a SQL statement")
    p.add_argument("sql", help="the statement ($1 placeholders or constants)")
    p.add_argument("--limit", type=int, default=5, help="rows shown at most (default 5)")
    p.add_argument("--min-similarity", type=float, default=0.5,
                   help="hide optimizations less similar than this cosine similarity (default 0.5)")
    p.add_argument("--target", help="only optimizations of this target")
    p.add_argument("--history", action="store_true", help="include superseded recommendations")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_similar)


class _NotJustSimilar(Exception):
    pass


class _SimilarOnlyParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _NotJustSimilar(message)   # the full parser says it, with the full usage


def _similar_parser() -> argparse.ArgumentParser:
    """The parser with `similar` alone: the full one imports the audit's modules (psycopg among
    them), a second the warm `similar` need not pay."""
    parser = _SimilarOnlyParser(prog="dbarch", description="AI database architect for PostgreSQL")
    _register_similar(parser.add_subparsers(dest="command", required=True))
    return parser


def _parse(words: list[str]) -> argparse.Namespace:
    if words[:1] == ["similar"]:
        try:
            return _similar_parser().parse_args(words)
        except _NotJustSimilar:
            pass
    return build_parser().parse_args(words)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbarch", description="AI database architect for PostgreSQL")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="manage the embedded PostgreSQL")
    p.add_argument("action", choices=["start", "stop", "status", "url", "reset"],
                   help="start, stop, status (exit 3 when stopped), url (of --database), reset (stop and delete data)")
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
    p.add_argument("--target-dsn", required=True,
                   help="the audited database (a one-off: nothing is scheduled for it; see `dbarch targets add`)")
    p.add_argument("--name", help="the name its results are kept under (default: its registered name, else its "
                                  "database name, else <database>@<server> when another server holds that name)")
    p.add_argument("--store-dsn", help="dbarch's memory (default: the embedded server)")
    p.add_argument("--sandbox-dsn", help="where experiments run (default: the target, rolled back)")
    p.add_argument("--json", help="write the results as JSON to this path")
    p.add_argument("--week", help="audit the week holding this day (YYYY-MM-DD) from stored captures; "
                                  "default: the week in progress, with a fresh capture")
    p.add_argument("--read-only-role", help="role that proves Gemini's rewrites (default: dbarch_reader)")
    p.add_argument("--i-accept-superuser-risk", action="store_true", dest="accept_superuser_risk",
                   help="prove rewrites as a superuser when no least-privilege role exists (NOT advised)")
    _thresholds(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("optimizations", help="list the OptimizationLog's current recommendations")
    p.add_argument("--target", help="only this target (see `dbarch targets list`)")
    p.add_argument("--limit", type=int, default=50, help="rows shown at most (default 50)")
    p.add_argument("--history", action="store_true",
                   help="include superseded rows (what earlier runs proposed and a later run replaced)")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--decline", metavar="ID",
                   help="decline a proposed recommendation (never published; later runs keep it declined)")
    p.set_defaults(func=cmd_optimizations)

    _register_similar(sub)

    p = sub.add_parser("report", help="print a stored week report (nothing is re-audited)")
    p.add_argument("--target", help="the target (default: the only one with a report)")
    p.add_argument("--week", help="any day of the week, YYYY-MM-DD (default: the latest week reported)")
    p.add_argument("--format", choices=["md", "json"], default="md", help="markdown (default) or JSON")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the project's instance")
    p.add_argument("--port", type=int, default=3000, help="port of the web UI (default 3000)")
    p.set_defaults(func=cmd_ui)

    from .ask.commands import register as register_ask
    from .api.server import register as register_serve
    from .metrics_cli import register as register_metrics

    from .targets_cli import register as register_targets
    from .activity_cli import register as register_sample_activity

    register_ask(sub)
    register_metrics(sub)
    register_targets(sub)
    register_sample_activity(sub)
    register_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # sqlglot warns on every statement it parses as an opaque command (dbarch's own DDL, VACUUM):
    # noise for a user, who gets a named reason for each statement that matters
    import logging

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    words = list(sys.argv[1:] if argv is None else argv)
    args = _parse(words)
    from .safety.faults import interrupt_on_sigterm

    interrupt_on_sigterm()   # SIGTERM as Ctrl-C: psycopg cancels the statement in flight
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - database errors become the clear error the README promises
        from .errors import explain

        clear = explain(exc)
        if clear is None:
            raise
        print(f"dbarch: {clear.problem}", file=sys.stderr)
        if clear.fix:
            print(f"  fix: {clear.fix}", file=sys.stderr)
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
