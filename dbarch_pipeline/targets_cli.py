"""`dbarch targets list|add|remove|weeks`: the audited databases and their lifecycle.

The store keeps who each target is (server system identifier + database OID) and where its DSN comes
from; the Dagster instance keeps the `target` partitions the schedules and sensors iterate over.
These commands keep both in step.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("targets", help="list, add or remove the audited databases")
    sub = p.add_subparsers(dest="action", required=True)

    q = sub.add_parser("list", help="registered and configured targets, their identity and partitions")
    q.add_argument("--all", action="store_true", help="include retired targets (recreated or removed databases)")
    q.add_argument("--json", action="store_true", help="print the targets as JSON")
    _common(q)

    q = sub.add_parser("add", help="register a target: captured hourly and audited every week")
    q.add_argument("name", help="readable name (the partition key), e.g. app or billing")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--dsn-env", metavar="VAR",
                     help="environment variable holding the DSN where the daemon runs (may hold a password)")
    src.add_argument("--dsn", help="a DSN without password (the password comes from PGPASSWORD or ~/.pgpass)")
    _common(q)

    q = sub.add_parser("remove", help="stop auditing a target and delete its partitions")
    q.add_argument("name", help="the target's name (see `dbarch targets list`)")
    q.add_argument("--purge", action="store_true",
                   help="also delete its history from the store (captures, audits, OptimizationLog rows)")
    _common(q)

    q = sub.add_parser("weeks", help="the weeks with captures of a target (the partitions worth backfilling)")
    q.add_argument("name", help="the target's name")
    q.add_argument("--keys", action="store_true",
                   help="print them as partition keys for `dagster job backfill --partitions`")
    _common(q)
    p.set_defaults(func=cmd_targets)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")


def cmd_targets(args: argparse.Namespace) -> int:
    from . import run, targets
    from .resources.postgres import StoreDatabase

    store = StoreDatabase(dsn=args.store_dsn or "")
    if args.action == "weeks":
        from .defs.partitions import audit_key, weeks_since

        with store.connect() as s:
            targets.require_known(s, args.name)
            first = targets.first_capture(s, args.name)
        weeks = weeks_since(first) if first else []
        if args.keys:
            print(",".join(str(audit_key(args.name, w)) for w in weeks))
        else:
            print("\n".join(weeks) if weeks else f"no capture of {args.name} yet")
        return 0
    instance = run.persistent_instance()
    return {"list": _list, "add": _add, "remove": _remove}[args.action](args, store, instance)


def _list(args, store, instance) -> int:
    from . import run, targets
    from .defs.partitions import TARGETS_NAME

    partitions = set(instance.get_dynamic_partitions(TARGETS_NAME))
    scheduled = run.scheduled_names(args.store_dsn)
    with store.connect() as s:
        rows = targets.registered(s, retired=args.all)
    out = []
    for r in rows:
        source = f"${r['dsn_env']}" if r["dsn_env"] else (r["dsn"] or "configuration")
        out.append({"name": r["name"], "database": r["database"], "server": r["server"],
                    "identity": f"{r['system_identifier']}/{r['database_oid']}", "dsn": source,
                    "scheduled": r["name"] in scheduled, "partition": r["name"] in partitions,
                    "first_capture": r["first_capture"], "last_capture": r["last_capture"],
                    "retired_at": r["retired_at"]})
    for name in sorted((scheduled | partitions) - {r["name"] for r in rows}):
        out.append({"name": name, "database": None, "server": None, "identity": None, "dsn": "configuration",
                    "scheduled": name in scheduled, "partition": name in partitions, "first_capture": None,
                    "last_capture": None, "retired_at": None})
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    if not out:
        print("no target yet: `dbarch demo`, `dbarch audit --target-dsn ...` or `dbarch targets add`")
    for t in out:
        state = "retired" if t["retired_at"] else ("scheduled" if t["scheduled"] else "not scheduled")
        first = f"{t['first_capture']:%Y-%m-%d %H:%M}" if t["first_capture"] else "never"
        print(f"{t['name']:24} {state:13} {t['database'] or '?'} on {t['server'] or '?'}  identity "
              f"{t['identity'] or 'not captured yet'}  DSN {t['dsn']}  first capture {first}"
              + ("" if t["partition"] or t["retired_at"] else "  (no partition)"))
    return 0


def _add(args, store, instance) -> int:
    import os

    from . import targets
    from .db import connect
    from .defs.partitions import TARGETS_NAME, register_weeks
    from .errors import DbarchError

    if args.dsn:
        _stripped, had_password = targets.strip_password(args.dsn)
        if had_password:
            raise DbarchError("the DSN holds a password, which dbarch never stores",
                              f"export it in a variable and use --dsn-env (e.g. export APP_DSN='{_redacted(args.dsn)}' "
                              "then --dsn-env APP_DSN), or keep the password in ~/.pgpass")
        dsn = args.dsn
    else:
        dsn = os.environ.get(args.dsn_env, "").strip()
        if not dsn:
            raise DbarchError(f"${args.dsn_env} is not set", f"export {args.dsn_env}=postgresql://user:pw@host:5432/db "
                              "here and where the Dagster daemon runs")
    with connect(dsn, "target") as t, store.connect() as s:
        identity = targets.identify(t)
        done = targets.ensure(s, identity, args.name, dsn=args.dsn, dsn_env=args.dsn_env, scheduled=True)
        first = targets.first_capture(s, args.name)
    if not instance.has_dynamic_partition(TARGETS_NAME, args.name):
        instance.add_dynamic_partitions(TARGETS_NAME, [args.name])
    if first:
        register_weeks(instance, first)
    print(f"target {args.name}: {identity.database} on {identity.server} (identity {identity.short}); "
          f"DSN from {'$' + args.dsn_env if args.dsn_env else 'the given DSN (no password)'}; captured hourly, "
          "audited every week")
    if done["retired"]:
        print(f"  the name held another database: its history is kept as {done['retired']['retired_as']}")
    return 0


def _redacted(dsn: str) -> str:
    from .db import redact

    return redact(dsn).replace("@", ":***@", 1)


def _remove(args, store, instance) -> int:
    from . import targets
    from .defs.partitions import TARGETS_NAME
    from .errors import DbarchError

    with store.connect() as s:
        known = targets.known_names(s)
        if args.name not in known and not instance.has_dynamic_partition(TARGETS_NAME, args.name):
            targets.require_known(s, args.name)
        done = targets.remove(s, args.name, purge=args.purge)
    removed = instance.has_dynamic_partition(TARGETS_NAME, args.name)
    if removed:
        instance.delete_dynamic_partition(TARGETS_NAME, args.name)
    from . import run

    if args.name in run.scheduled_names(args.store_dsn):
        raise DbarchError(f"{args.name} is still configured (DBARCH_TARGETS or the default target): the "
                          "target_registry sensor will add it back",
                          "remove it from DBARCH_TARGETS / DBARCH_TARGET_DSN too")
    what = (f"history deleted ({done['captures']} captures, {done['snapshots']} audits, {done['log_rows']} log rows, "
            f"{done['observed_values']} observed parameter values, {done['activity_samples']} sampled statement texts, "
            f"{done['ask_documents']} ask documents)"
            if done["purged"] else "history kept (`--purge` deletes it)")
    print(f"target {args.name} removed: {'its partitions deleted' if removed else 'no partitions'}; {what}")
    return 0
