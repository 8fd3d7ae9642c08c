"""A warm `dbarch similar`: one process per DBARCH_HOME that keeps the model and the imports loaded.

A fresh `dbarch similar` spends most of its time before it does anything: importing psycopg, numpy and
sqlglot (about 1 s on the busy 2-core machine), and torch with the model (several seconds) when the
statement is new. So the first call answers in-process as before and then starts this process in the
background; later calls send their arguments over a unix socket and print the answer, importing
nothing but the standard library.

- The socket lives in `<DBARCH_HOME>/run/` (mode 0700, the socket 0600), and the process answers only
  peers of its own user (SO_PEERCRED), so it is no wider than the user's own files.
- It exits after DBARCH_SIMILAR_IDLE_S seconds without a request (default 600; 0 never starts one),
  on `dbarch db stop`, and when dbarch's code changed under it (it answers "fall back" and leaves).
- Anything it cannot answer (no socket, a stale one, the store unreachable, any unexpected error)
  makes the command answer in-process, as if no warm process existed: the warm path is a shortcut,
  never a second behaviour. A problem the user must fix (an unknown target) comes back as the same
  clear error, with the same exit status.

Run by hand: python -m dbarch_pipeline.warm_similar serve | stop | status
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from .settings import data_dir

PROTOCOL = 1
IDLE_ENV = "DBARCH_SIMILAR_IDLE_S"
DEFAULT_IDLE_S = 600.0
REQUEST_TIMEOUT_S = 30.0
MAX_MESSAGE = 1 << 20


def idle_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S))
    except ValueError:
        return DEFAULT_IDLE_S


def run_dir() -> Path:
    path = data_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def socket_path() -> Path:
    return run_dir() / "similar.sock"


# -- client (standard library only: this is what makes the warm call fast) -----------------------------

def _exchange(message: dict, timeout: float = REQUEST_TIMEOUT_S) -> dict | None:
    path = data_dir() / "run" / "similar.sock"
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps(message).encode() + b"\n")
            data = _read_line(s)
    except (OSError, ValueError):   # refused (stale socket), timed out, reset mid-answer
        return None
    return json.loads(data) if data else None


def _read_line(s: socket.socket) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > MAX_MESSAGE * 64:
            break
    return b"".join(chunks)


def similar(store_dsn: str, sql_text: str, *, limit: int, min_similarity: float, target: str | None,
            history: bool) -> dict | None:
    """The warm process's answer — {"rows": [...], "cached": bool} or {"problem": ..., "fix": ...} — or
    None when there is none to ask or it could not answer (the caller answers in-process)."""
    reply = _exchange({"op": "similar", "protocol": PROTOCOL, "store_dsn": store_dsn, "sql": sql_text,
                       "limit": limit, "min_similarity": min_similarity, "target": target, "history": history})
    if not reply or reply.get("fallback"):
        return None
    return reply


def status() -> dict | None:
    return _exchange({"op": "status", "protocol": PROTOCOL}, timeout=5)


def stop() -> bool:
    """Ask the warm process to exit; True when one was running."""
    return _exchange({"op": "stop", "protocol": PROTOCOL}, timeout=5) is not None


def start_in_background() -> bool:
    """Start the warm process for the next calls (it loads the model, then listens). A second one
    started meanwhile sees the lock and leaves."""
    if idle_seconds() <= 0:
        return False
    log = open(run_dir() / "similar.log", "ab")
    try:
        subprocess.Popen([sys.executable, "-m", "dbarch_pipeline.warm_similar", "serve"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True)
    finally:
        log.close()
    return True


# -- server --------------------------------------------------------------------------------------------

def _code_stamp() -> float:
    """The newest modification time of dbarch's own modules: a change means this process is stale."""
    root = Path(__file__).resolve().parent
    return max((p.stat().st_mtime for p in root.rglob("*.py")), default=0.0)


class Server:
    def __init__(self, idle_s: float):
        self.idle_s = idle_s
        self.stamp = _code_stamp()
        self.conns: dict[str, object] = {}
        self.started = time.time()
        self.requests = 0

    def handle(self, request: dict) -> tuple[dict, bool]:
        """(reply, keep running)."""
        op = request.get("op")
        if request.get("protocol") != PROTOCOL or _code_stamp() != self.stamp:
            return {"fallback": True, "reason": "this warm process is older than dbarch's code"}, False
        if op == "stop":
            return {"ok": True, "pid": os.getpid()}, False
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "since": self.started, "requests": self.requests,
                    "idle_s": self.idle_s}, True
        if op == "similar":
            self.requests += 1
            return self.similar(request), True
        return {"fallback": True, "reason": f"unknown request {op!r}"}, True

    def _conn(self, dsn: str):
        from . import db
        from .memory import store

        conn = self.conns.get(dsn)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = db.connect(dsn, "store")
        store.ensure_schema(conn)
        self.conns[dsn] = conn
        return conn

    def similar(self, request: dict) -> dict:
        from . import similar
        from .errors import DbarchError

        dsn = request["store_dsn"]
        try:
            conn = self._conn(dsn)
            found = similar.search(conn, request["sql"], limit=request["limit"],
                                   min_similarity=request["min_similarity"], target=request.get("target"),
                                   history=bool(request.get("history")))
        except DbarchError as exc:
            from .errors import UnreachableDatabase

            if isinstance(exc, UnreachableDatabase):
                # the command's own path gives this error (and starts the embedded server)
                return {"fallback": True, "reason": "store unreachable"}
            return {"problem": exc.problem, "fix": exc.fix}
        except Exception as exc:  # noqa: BLE001 - the command answers in-process, with its own errors
            bad = self.conns.pop(dsn, None)
            if bad is not None:
                bad.close()
            return {"fallback": True, "reason": type(exc).__name__}
        return {"rows": found["rows"], "cached": found["cached"], "warm": True}

    def serve(self) -> int:
        import fcntl

        with open(run_dir() / "similar.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0     # another warm process is starting or running
            lock.seek(0)
            lock.truncate()
            lock.write(str(os.getpid()))
            lock.flush()
            return self._listen()

    def _listen(self) -> int:
        # load what a search needs before listening: until then callers answer in-process
        from . import similar  # noqa: F401 - the imports are the point
        from .memory.embeddings import Embedder

        Embedder().embed_one("SELECT 1")

        path = socket_path()
        path.unlink(missing_ok=True)     # left by a process that died: we hold the lock
        old = os.umask(0o177)
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
        finally:
            os.umask(old)
        listener.listen(8)
        deadline = time.monotonic() + self.idle_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                listener.settimeout(left)
                try:
                    client, _ = listener.accept()
                except socket.timeout:
                    return 0
                with client:
                    keep = self._answer(client)
                deadline = time.monotonic() + self.idle_s
                if not keep:
                    return 0
        finally:
            path.unlink(missing_ok=True)
            listener.close()
            for conn in self.conns.values():
                conn.close()

    def _answer(self, client: socket.socket) -> bool:
        client.settimeout(REQUEST_TIMEOUT_S)
        if hasattr(socket, "SO_PEERCRED"):
            _pid, uid, _gid = struct.unpack("3i", client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                    struct.calcsize("3i")))
            if uid != os.getuid():
                return True     # not our user: no answer at all
        try:
            request = json.loads(_read_line(client) or b"{}")
            reply, keep = self.handle(request)
        except ValueError:
            reply, keep = {"fallback": True, "reason": "unreadable request"}, True
        try:
            client.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass
        return keep


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    action = argv[0] if argv else "status"
    if action == "serve":
        idle = idle_seconds()
        return Server(idle).serve() if idle > 0 else 0
    if action == "stop":
        print("stopped" if stop() else "no warm process")
        return 0
    print(json.dumps(status()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
