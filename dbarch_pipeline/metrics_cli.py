"""`dbarch metrics`: the store's Prometheus metrics, printed, written to a textfile, or served (the
same collector `dbarch serve` exposes on GET /metrics)."""

from __future__ import annotations

import argparse
import time
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("metrics", help="Prometheus metrics of the store (print, textfile or serve)")
    p.add_argument("--textfile", metavar="PATH",
                   help="write them here for node_exporter's textfile collector (atomic; name it *.prom)")
    p.add_argument("--serve", type=int, metavar="PORT", help="serve them on http://HOST:PORT/metrics until stopped")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.set_defaults(func=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    from prometheus_client import generate_latest, start_http_server

    from . import metrics
    from .resources.postgres import StoreDatabase

    registry = metrics.registry_for(StoreDatabase(dsn=args.store_dsn or "").connect)
    text = generate_latest(registry).decode()   # fails fast, with the store's error, before anything is written
    if args.textfile:
        path = metrics.write_textfile(args.textfile, registry)
        print(f"metrics written to {path}", flush=True)
    if args.serve is None:
        if not args.textfile:
            print(text, end="", flush=True)
        return 0
    server, _thread = start_http_server(args.serve, addr=args.host, registry=registry)
    host, port = server.server_address[:2]
    print(f"serving metrics on http://{host}:{port}/metrics (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
