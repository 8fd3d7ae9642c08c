"""`dbarch serve`: the admin API on uvicorn.

Without DBARCH_ADMIN_TOKENS the server is open to whoever reaches it, so it then refuses any
address but loopback. Log records pass through the redacting filter, so no token or DSN is logged.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import threading
import time
from typing import Any

from ..ask.commands import add_sql_options
from ..errors import DbarchError
from ..settings import SANDBOX_DSN_ENV, STORE_DSN_ENV, TARGET_DSN_ENV, TARGETS_ENV
from .auth import TOKENS_ENV, parse_tokens

log = logging.getLogger("dbarch.api")
SECRET_ENVS = (TARGET_DSN_ENV, SANDBOX_DSN_ENV, STORE_DSN_ENV, "GEMINI_API_KEY", "GITHUB_TOKEN", "DAGSTER_PG_URL")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="the admin HTTP API (optimizations, similar, ask, audits, metrics)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs DBARCH_ADMIN_TOKENS)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--target-dsn", help="the default target (default: $DBARCH_TARGET_DSN, else the embedded demo)")
    p.add_argument("--store-dsn", help="dbarch's memory (default: $DBARCH_STORE_DSN, else the embedded server)")
    p.add_argument("--sandbox-dsn", help="where audit experiments run (default: the target, rolled back)")
    add_sql_options(p)     # how the ask endpoint runs SQL: the same options as `dbarch ask`
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="largest request body (default 65536)")
    p.add_argument("--max-concurrent-asks", type=int, default=2,
                   help="questions answered at once; more get 429 (default 2)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="threads torch uses to embed a search's statement (default 1: lowest latency per request)")
    p.add_argument("--embed-runtime", choices=("onnx", "torch"),
                   help="run the embedding model on ONNX Runtime or torch (default: $DBARCH_EMBED_RUNTIME, else onnx "
                        "when onnxruntime is installed); both give the same vectors")
    p.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    """True when every address the host name resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_binding(host: str, tokens: tuple) -> None:
    if not tokens and not is_loopback(host):
        raise DbarchError(f"refusing to listen on {host} without {TOKENS_ENV}: anyone reaching it could ask the "
                          "database and start audits",
                          f"set {TOKENS_ENV}=read:TOKEN,admin:TOKEN2, or listen on 127.0.0.1")


def redactor_for(resources: dict, tokens: tuple):
    from .redact import Redactor

    secrets = [t.secret for t in tokens] + [os.environ.get(name, "") for name in SECRET_ENVS]
    for resource in resources.values():
        secrets += [getattr(resource, "dsn", "") or "", getattr(resource, "api_key", "") or ""]
    from ..resources.postgres import parse_targets

    secrets += list(parse_targets(os.environ.get(TARGETS_ENV, "")).values())
    return Redactor(secrets)


def build(args: argparse.Namespace):
    """The application for these arguments (tokens read from the environment now)."""
    from ..ask.commands import settings_from
    from ..run import audit_resources
    from .app import ApiConfig, create_app

    if getattr(args, "embed_runtime", None):
        from ..memory.embeddings import RUNTIME_ENV

        os.environ[RUNTIME_ENV] = args.embed_runtime
    tokens = parse_tokens(os.environ.get(TOKENS_ENV, ""))
    check_binding(args.host, tokens)
    resources = audit_resources(target_dsn=args.target_dsn, sandbox_dsn=args.sandbox_dsn, store_dsn=args.store_dsn)
    ask = settings_from(args)
    config = ApiConfig(resources=resources, tokens=tokens, ask_settings=ask, max_body_bytes=args.max_body_bytes,
                       max_concurrent_asks=args.max_concurrent_asks, redactor=redactor_for(resources, tokens),
                       torch_threads=args.torch_threads or None)
    return create_app(config), config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from . import redact

    app, config = build(args)
    with config.resources["store"].connect():   # fail fast, with the store's error, before listening
        pass
    server_config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                                   server_header=False, timeout_graceful_shutdown=10)
    redact.install(config.redactor)   # after uvicorn configured its handlers
    if not config.tokens:
        log.warning("%s is not set: the API is open to local users only (listening on %s)", TOKENS_ENV, args.host)
    embedder = app.state.dbarch.embedder
    print(f"serving the admin API on http://{args.host}:{args.port} (Swagger UI at /docs, metrics at /metrics); "
          f"embedding with {embedder.describe()}", flush=True)
    uvicorn.Server(server_config).run()
    return 0


class Background:
    """The application on uvicorn in a daemon thread, on a free loopback port (tests, benchmarks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Background":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
