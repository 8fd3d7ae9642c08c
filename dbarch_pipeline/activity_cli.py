"""`dbarch sample-activity`: a burst of the pg_stat_activity sampler (bench/activity.py), for peak
hours, beside the activity_sampler sensor's ticks. The texts are kept in the store, never printed."""

from __future__ import annotations

import argparse
import time
from typing import Any

CHUNK_S = 10.0      # kept in the store every this many seconds (Ctrl-C loses at most one chunk)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sample-activity",
                              help="sample pg_stat_activity for the constants pg_stat_statements replaces (peak hours)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--target", help="a configured or registered target's name (default: the default target)")
    src.add_argument("--target-dsn", help="the database to sample (its name: --name, else as `dbarch audit` names it)")
    p.add_argument("--name", help="with --target-dsn: the name its samples are kept under")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to sample (default 60)")
    p.add_argument("--interval", type=float, default=0.1,   # bench/activity.py DEFAULT_INTERVAL
                   help="seconds between two reads of pg_stat_activity (default 0.1; each read takes under 1 ms)")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.set_defaults(func=cmd_sample_activity)


def cmd_sample_activity(args: argparse.Namespace) -> int:
    from . import db, targets
    from .bench import activity
    from .bench.observed import ObservedSettings
    from .errors import DbarchError
    from .memory import store as memory
    from .resources.postgres import StoreDatabase, TargetDatabase

    if args.seconds <= 0 or args.interval <= 0:
        raise DbarchError(f"--seconds and --interval must be positive (got {args.seconds:g} and {args.interval:g})",
                          "for example --seconds 300 --interval 0.1")
    if args.name and not args.target_dsn:
        raise DbarchError("--name goes with --target-dsn", "use --target NAME for a configured target")
    settings = ObservedSettings.from_env()
    if not settings.enabled:
        print(activity.summary_line({"activity_samples": "off"}), flush=True)
        return 0
    store = StoreDatabase(dsn=args.store_dsn or "")
    if args.target_dsn:
        def connect():
            return db.connect(args.target_dsn, "target")
        with connect() as t, store.connect() as s:
            name = targets.name_for(s, targets.identify(t), args.name)
    else:
        resource = TargetDatabase()
        name = args.target or resource.target_name()

        def connect():
            return resource.connect(name)
    total = {"samples": 0, "executions": 0}
    statements: set[int] = set()
    notes: list[str] = []
    with connect() as t, store.connect() as s:
        print(f"sampling pg_stat_activity of {name} for {args.seconds:g} s every {args.interval:g} s (Ctrl-C "
              "stops; what was seen is kept)", flush=True)
        deadline = time.monotonic() + args.seconds
        while True:
            chunk = min(CHUNK_S, deadline - time.monotonic())
            if chunk <= 0:
                break
            try:
                seen = activity.sample(t, seconds=chunk, interval=args.interval)
            except KeyboardInterrupt:
                break
            activity.save(s, name, seen, settings)
            total["samples"] += seen.samples
            total["executions"] += sum(len(r) for r in seen.texts.values())
            statements |= {qid for qid, _text in seen.texts}
            notes += [n for n in seen.notes() if n not in notes]
        print(f"{total['samples']} sample(s): texts of {len(statements)} statement(s) seen in "
              f"{total['executions']} execution(s), kept in the store", flush=True)
        for note in notes:
            print(f"  note: {note}", flush=True)
        snap = memory.latest_snapshot(s, name)
        if snap is not None:
            done = activity.coverage(s, name, memory.snapshot_queries(s, snap["snapshot_id"]), settings)
            print(f"the latest audit's slow statements: {done['sampled_statements']} of {done['slow_statements']} "
                  f"have a sampled text; {done['lost_constants_sampled']} of {done['lost_constants']} whose indexed "
                  "expression lost its constants get them back", flush=True)
    return 0
