"""`dbarch ask` and `dbarch explain-sql`: the CLI face of the ask package.

`register(subparsers)` adds both subcommands to the `dbarch` parser. Problems a user can fix raise
DbarchError (the CLI prints the problem and the fix, exit 2); without Gemini, a question no stored
pair is close to also exits 2 (its note names the fix: a key, or examples); an answer that could not
be produced (every reply refused or failing) prints why and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

# Imports of the heavy parts (dagster, numpy, the model) wait for a handler to run, so that
# registering the subcommands keeps every other `dbarch` command fast.


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ask", help="ask the database a question in plain language (read-only SELECT)")
    p.add_argument("question", help="the question, in plain language")
    _common(p)
    p.add_argument("--docs", nargs="+", default=[], metavar="PATH",
                   help="markdown or text files describing the data, added to the corpus")
    p.add_argument("--examples", metavar="PATH", help="YAML or JSON list of {question, sql} pairs")
    p.add_argument("--confirm", action="store_true",
                   help="keep this question and its SQL as an example for next time")
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("explain-sql", help="explain a SELECT and its plan in plain language")
    p.add_argument("sql", help="the SELECT to explain ($1 placeholders allowed)")
    _common(p)
    p.set_defaults(func=cmd_explain_sql)

    p = subparsers.add_parser("doctor", help="check the least-privilege role generated SQL runs as, and print "
                                             "the GRANTs that fix it")
    p.add_argument("--target-dsn", help="the database checked (default: $DBARCH_TARGET_DSN, else the embedded demo)")
    p.add_argument("--role", help="the role to check (default: dbarch_reader if it exists, else the connecting user)")
    p.add_argument("--schemas", nargs="+", default=["public"], help="schemas it should read (default public)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_doctor)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-dsn", help="the database asked (default: $DBARCH_TARGET_DSN, else the embedded demo)")
    p.add_argument("--store-dsn", help="where the corpus lives (default: the embedded server)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_sql_options(p)


def add_sql_options(p: argparse.ArgumentParser) -> None:
    """How generated SQL runs: the options `dbarch ask`, `explain-sql` and `dbarch serve` (its ask
    endpoint) share, read back by `settings_from`."""
    p.add_argument("--max-rows", type=int, default=100, help="rows an answer returns at most (default 100)")
    p.add_argument("--schemas", nargs="+", default=["public"], help="schemas the SQL may read (default public)")
    p.add_argument("--read-only-role", help="run the SQL as this role (e.g. one granted pg_read_all_data)")
    p.add_argument("--timeout-ms", type=int, default=10_000, help="statement timeout (default 10000)")
    p.add_argument("--allow-functions", nargs="+", default=[], metavar="NAME",
                   help="functions beyond PostgreSQL's built-ins the SQL may call (e.g. similarity)")
    p.add_argument("--i-accept-superuser-risk", action="store_true", dest="accept_superuser_risk",
                   help="run generated SQL as a superuser when no least-privilege role exists (NOT advised: "
                        "only the allow-list would then stand between the model and the server)")
    p.add_argument("--max-value-bytes", type=int, default=64 * 1024, help="longer values are cut (default 65536)")
    p.add_argument("--max-total-bytes", type=int, default=4 * 1024 * 1024,
                   help="fetching stops beyond this many bytes (default 4 MiB)")


def settings_from(args: argparse.Namespace):
    """AskSettings from the options add_sql_options added."""
    from .answer import AskSettings

    return AskSettings(schemas=tuple(args.schemas), max_rows=args.max_rows, statement_timeout_ms=args.timeout_ms,
                       read_only_role=args.read_only_role or None,
                       accept_superuser_risk=args.accept_superuser_risk,
                       allowed_functions=tuple(args.allow_functions), max_value_bytes=args.max_value_bytes,
                       max_total_bytes=args.max_total_bytes)


def _say(message: str) -> None:
    print(f"dbarch: {message}", file=sys.stderr, flush=True)


def _resources(args: argparse.Namespace):
    from ..llm.gemini import GeminiResource
    from ..resources.postgres import StoreDatabase, TargetDatabase

    return (TargetDatabase(dsn=args.target_dsn or ""), StoreDatabase(dsn=args.store_dsn or ""),
            GeminiResource().client(say=_say))


def cmd_ask(args: argparse.Namespace) -> int:
    from ..memory.embeddings import Embedder
    from .answer import answer
    from .corpus import confirm_example, refresh_corpus

    target, store, client = _resources(args)
    settings = settings_from(args)
    embedder = Embedder()
    with target.connect() as t, store.connect() as s:
        corpus = refresh_corpus(t, s, embedder, target=target.target_name(), schemas=settings.schemas,
                                docs=args.docs, examples=args.examples)
        for skip in corpus["skipped_examples"]:
            _say(f"example skipped ({skip['reason']}): {skip['question']}")
        result = answer(args.question, target_conn=t, store_conn=s, embedder=embedder, client=client,
                        target=target.target_name(), settings=settings)
        if args.confirm and result.status == "answered" and result.sql:
            confirm_example(s, embedder, target=target.target_name(), question=args.question,
                            sql_text=result.sql, schemas=settings.schemas)
            _say("kept as an example: the next similar question will see it")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(format_answer(result))
    if result.status == "no_match":
        return 2   # without Gemini, nothing stored is close: the label names the fix (a key, or examples)
    return 0 if result.ok else 1


def cmd_explain_sql(args: argparse.Namespace) -> int:
    from .explain import explain_sql

    target, _store, client = _resources(args)
    with target.connect() as t:
        result = explain_sql(args.sql, conn=t, client=client, settings=settings_from(args))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    if result["explanation"]:
        print(result["explanation"])
        for concern in result["concerns"]:
            print(f"  - {concern}")
        print()
    print("\n".join(result["summary"]))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..resources.postgres import TargetDatabase
    from ..safety.roles import doctor

    with TargetDatabase(dsn=args.target_dsn or "").connect() as conn:
        result = doctor(conn, args.role, args.schemas)
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        print(f"ok: generated SQL runs as {result['role']}, which reads only {', '.join(args.schemas)} and has no "
              "superuser, file, replication, signal or dblink rights")
    else:
        print(f"generated SQL would run as {result['role']} (connected as {result.get('session_user')}):")
        for problem in result["problems"]:
            print(f"  - {problem['problem']}")
            print("    fix:\n" + "\n".join(f"      {line}" for line in problem["fix"].splitlines()))
    return 0 if result["ok"] else 1


def format_answer(result: Any) -> str:
    lines = [f"Q: {result.question}"]
    if result.label:
        lines.append(("NOTE: " if result.source != "gemini" or not result.ok else "") + result.label)
    if result.sql:
        lines += ["", "SQL:", *("  " + line for line in result.sql.splitlines())]
    if result.explanation:
        lines += ["", result.explanation]
    if result.ok:
        lines += ["", format_rows(result.columns, result.rows)]
        if result.truncated:
            lines.append("(more rows not shown; raise --max-rows)")
        lines += [f"({note})" for note in getattr(result, "notes", [])]
    elif result.attempts:
        lines += ["", "Attempts:"] + [f"  {a['outcome']}: {a['reason']}" for a in result.attempts if a["reason"]]
    if result.tables_in_prompt:
        lines += ["", "tables shown to Gemini: " + ", ".join(result.tables_in_prompt)]
    return "\n".join(lines)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 40) -> str:
    def cell(v: Any) -> str:
        text = "NULL" if v is None else str(v)
        return text if len(text) <= width else text[: width - 1] + "…"

    table = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in table]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
