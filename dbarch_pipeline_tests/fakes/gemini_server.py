"""A small local HTTP server that speaks Gemini's REST API (`generateContent`), for tests.

The real google-genai client is pointed at it through its base URL. It answers
`POST /{version}/models/{model}:generateContent` exactly as the Gemini API does
(`{"candidates": [{"content": {"parts": [{"text": ...}], "role": "model"}, "finishReason": "STOP"}],
"usageMetadata": {...}}`) and errors as `{"error": {"code", "message", "status"}}`.

Replies are scripted: a queue consumed in order (`push_json`, `push_text`, `push_error`), or a
function `handler(request_body) -> Reply` used when the queue is empty. Every request is recorded
(path, headers, body) so tests can read the prompt the client sent.

    with FakeGemini() as gemini:
        gemini.push_error(429)
        gemini.push_json({"sql": "SELECT 1", "explanation": "one"})
        client = GeminiClient("test-key", base_url=gemini.base_url)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

GENERATE = re.compile(r"^/(?P<version>v1(beta)?)/models/(?P<model>[^/:]+):generateContent$")

# The status names Google's APIs put next to each HTTP code.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class Reply:
    """One scripted answer: a model text (status 200), or an error status with its message."""

    status: int = 200
    text: str | None = None
    message: str = ""
    delay_s: float = 0.0                 # sleep before answering (to trip the client's timeout)
    finish_reason: str = "STOP"
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = None  # overrides the computed usageMetadata


def json_reply(obj: Any, **kwargs: Any) -> Reply:
    return Reply(text=json.dumps(obj), **kwargs)


def error_reply(status: int, message: str = "", **kwargs: Any) -> Reply:
    return Reply(status=status, message=message or f"scripted {status}", **kwargs)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict

    @property
    def model(self) -> str:
        m = GENERATE.match(self.path)
        return m.group("model") if m else ""

    @property
    def prompt(self) -> str:
        """The text of every user turn, joined (what the client asked)."""
        return "\n".join(part.get("text", "") for content in self.body.get("contents", [])
                         for part in content.get("parts", []))

    @property
    def system(self) -> str:
        return "\n".join(p.get("text", "") for p in (self.body.get("systemInstruction") or {}).get("parts", []))

    @property
    def generation_config(self) -> dict:
        return self.body.get("generationConfig") or {}


class FakeGemini:
    """The scriptable server; start()/stop() or use it as a context manager."""

    def __init__(self, handler: Callable[[dict], Reply] | None = None, *, api_key: str | None = None):
        self.handler = handler
        self.api_key = api_key          # when set, other keys get Gemini's 400 API_KEY_INVALID
        self.requests: list[Request] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------------

    def push(self, *replies: Reply) -> "FakeGemini":
        with self._lock:
            self._queue.extend(replies)
        return self

    def push_json(self, obj: Any, **kwargs: Any) -> "FakeGemini":
        return self.push(json_reply(obj, **kwargs))

    def push_text(self, text: str, **kwargs: Any) -> "FakeGemini":
        return self.push(Reply(text=text, **kwargs))

    def push_error(self, status: int, message: str = "", **kwargs: Any) -> "FakeGemini":
        return self.push(error_reply(status, message, **kwargs))

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.requests]

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeGemini":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as httpx expects

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                fake._serve(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(http, 400, _error_body(400, "Invalid JSON payload received."))
        request = Request(path=http.path.split("?")[0], headers={k.lower(): v for k, v in http.headers.items()},
                          body=body)
        with self._lock:
            self.requests.append(request)
        match = GENERATE.match(request.path)
        if match is None:
            return self._send(http, 404, _error_body(404, f"Method not found: {request.path}"))
        key = request.headers.get("x-goog-api-key", "")
        if not key:
            return self._send(http, 403, _error_body(
                403, "Method doesn't allow unregistered callers. Please use API Key or other form of API "
                     "consumer identity to call this API."))
        if self.api_key is not None and key != self.api_key:
            # what Google answers for a wrong key: 400, not 401
            return self._send(http, 400, _error_body(400, "API key not valid. Please pass a valid API key.",
                                                     reason="API_KEY_INVALID"))
        if not body.get("contents"):
            return self._send(http, 400, _error_body(400, "* GenerateContentRequest.contents: contents is not specified"))

        reply = self._next_reply(body)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            return self._send(http, reply.status, _error_body(reply.status, reply.message), reply.headers)
        prompt_tokens = max(1, sum(len(p.get("text", "")) for c in body["contents"] for p in c.get("parts", [])) // 4)
        output_tokens = max(1, len(reply.text or "") // 4)
        usage = reply.usage or {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                                "totalTokenCount": prompt_tokens + output_tokens}
        out = {
            "candidates": [{
                "content": {"parts": [{"text": reply.text or ""}], "role": "model"},
                "finishReason": reply.finish_reason, "index": 0,
            }],
            "usageMetadata": usage,
            "modelVersion": match.group("model"),
            "responseId": f"fake-{len(self.requests)}",
        }
        self._send(http, 200, out, reply.headers)

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            return self.handler(body)
        return error_reply(500, "the fake Gemini server has no scripted reply left")

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, payload: dict,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json; charset=UTF-8")
        http.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)


def _error_body(status: int, message: str, *, reason: str | None = None) -> dict:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    return {"error": error}


def request_text(body: dict) -> str:
    """The user-turn text of a raw request body (for handlers)."""
    return "\n".join(part.get("text", "") for content in body.get("contents", [])
                     for part in content.get("parts", []))
