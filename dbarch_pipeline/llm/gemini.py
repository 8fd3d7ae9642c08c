"""Gemini through the google-genai client: JSON replies, bounded retries, token usage, clear errors.

`GeminiClient` is plain Python (no Dagster): `generate_json(prompt, schema)` asks for
`application/json` constrained by a response schema and returns `(reply, usage)`. 408/429/5xx and
network errors are retried with exponential backoff (honouring the server's retry delay);
a refused key, a request Gemini rejects, or a reply that is not a JSON object raise a `GeminiError`
(a `DbarchError`) that says what to do.

`GeminiResource` is the Dagster face. Its key comes from `GEMINI_API_KEY` when the resource is
*used*, never at import time; without a key `.client()` returns None and says once per process that
Gemini is off, and every feature carries on without it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import dagster as dg
from pydantic import Field

from ..errors import DbarchError

API_KEY_ENV = "GEMINI_API_KEY"
BASE_URL_ENV = "GEMINI_BASE_URL"
MODEL_ENV = "GEMINI_MODEL"
DEFAULT_MODEL = "gemini-2.5-flash"
# Structured output (responseSchema) is documented on v1beta; the client library defaults to v1.
DEFAULT_API_VERSION = "v1beta"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
KEY_FIX = (f"set {API_KEY_ENV} to a valid key from https://aistudio.google.com/apikey, or unset it to "
           "run without Gemini")

log = logging.getLogger("dbarch.gemini")


class GeminiError(DbarchError):
    """Gemini gave no usable reply."""


class GeminiAuthError(GeminiError):
    """The key was refused: a configuration problem, never retried and never swallowed."""


class GeminiUnavailable(GeminiError):
    """Still 429/5xx or unreachable after every retry."""


class GeminiBadReply(GeminiError):
    """A reply that is empty, blocked, truncated or not the JSON object the schema asked for."""


@dataclass
class Usage:
    """Tokens and attempts of one call (or, summed, of a client's life)."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    thoughts_tokens: int = 0
    total_tokens: int = 0

    def add(self, other: "Usage") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever httpx flavour the library uses (timeouts, refused connections)."""
    found: list[type[BaseException]] = []
    for module in ("httpx", "httpx2"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        if hasattr(mod, "TransportError"):
            found.append(mod.TransportError)
    return tuple(found)


class GeminiClient:
    """A google-genai client that returns JSON objects and knows when to retry."""

    def __init__(self, api_key: str, *, model: str = DEFAULT_MODEL, base_url: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, api_version: str = DEFAULT_API_VERSION,
                 sleep: Callable[[float], None] = time.sleep):
        from google import genai
        from google.genai import types

        if not api_key:
            raise ValueError("GeminiClient needs an API key; use GeminiResource.client() to handle 'no key'")
        self.model = model or DEFAULT_MODEL
        self.base_url = base_url or None
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.usage = Usage()
        self._sleep = sleep
        self._types = types
        # retry_options stays unset: the library then never retries, and the loop below owns retries
        # (so attempts are counted, and the error after the last one says what happened).
        self._client = genai.Client(
            api_key=api_key, vertexai=False,
            http_options=types.HttpOptions(base_url=self.base_url, api_version=api_version,
                                           timeout=int(timeout_s * 1000)))
        self._transport = _transport_errors()

    def generate_json(self, prompt: str, schema: dict, *, system: str | None = None,
                      temperature: float = 0.0) -> tuple[dict, dict]:
        """Ask for a JSON object matching `schema`; returns (the object, this call's usage)."""
        from google.genai import errors as genai_errors

        config = self._types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=schema,
            system_instruction=system, temperature=temperature)
        usage = Usage(calls=1)
        last = ""
        response = None
        for attempt in range(self.max_retries + 1):
            usage.attempts += 1
            retry_after = None
            try:
                response = self._client.models.generate_content(model=self.model, contents=prompt, config=config)
                break
            except genai_errors.APIError as exc:
                self._raise_unless_retryable(exc)
                last = f"{exc.code} {exc.status or ''}".strip()
                retry_after = _retry_after(exc)
            except self._transport as exc:  # type: ignore[misc]
                last = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            if attempt == self.max_retries:
                self.usage.add(usage)
                raise GeminiUnavailable(
                    f"Gemini ({self.model} at {self.base_url or 'generativelanguage.googleapis.com'}) still "
                    f"failed after {usage.attempts} attempts: {last}",
                    "wait and run again (429 means the quota or rate limit is reached), or raise "
                    "max_retries / timeout_s on the gemini resource")
            usage.retries += 1
            delay = min(self.max_backoff_s, retry_after if retry_after is not None
                        else self.backoff_s * (2 ** attempt) * (1 + random.random() * 0.25))
            log.info("Gemini answered %s; retry %d/%d in %.2fs", last, attempt + 1, self.max_retries, delay)
            self._sleep(delay)

        _add_token_counts(usage, response)
        self.usage.add(usage)
        return _parse_reply(response), usage.as_dict()

    def _raise_unless_retryable(self, exc: Any) -> None:
        code = exc.code
        message = (exc.message or str(exc)).strip()
        if code in (401, 403) or "API_KEY_INVALID" in json.dumps(exc.details, default=str) \
                or "API key not valid" in message:
            raise GeminiAuthError(f"Gemini refused the API key ({code} {exc.status}): {message}", KEY_FIX) from None
        if code == 404:
            raise GeminiError(f"Gemini does not know the model {self.model!r} ({message})",
                              f"set {MODEL_ENV} (or the resource's model) to a current model such as "
                              f"{DEFAULT_MODEL}") from None
        if code not in RETRYABLE_STATUS:
            raise GeminiError(f"Gemini rejected the request ({code} {exc.status}): {message}",
                              "this is a bug in dbarch's request or an unsupported model; report it with "
                              "the message above") from None


def usage_metadata(usage: "Usage | dict[str, int]", prefix: str = "gemini") -> dict[str, int]:
    """Token usage as stable numeric asset metadata keys (gemini/prompt_tokens, gemini/retries ...)."""
    values = usage.as_dict() if isinstance(usage, Usage) else dict(usage)
    return {f"{prefix}/{key}": int(value) for key, value in values.items()}


def _retry_after(exc: Any) -> float | None:
    """The wait the server asks for: a Retry-After header, or google.rpc.RetryInfo's retryDelay."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    m = re.search(r"'retryDelay': '([\d.]+)s'|\"retryDelay\": \"([\d.]+)s\"", str(exc.details))
    if m:
        return float(m.group(1) or m.group(2))
    return None


def _add_token_counts(usage: Usage, response: Any) -> None:
    meta = getattr(response, "usage_metadata", None)
    if meta is None:
        return
    usage.prompt_tokens += meta.prompt_token_count or 0
    usage.output_tokens += meta.candidates_token_count or 0
    usage.thoughts_tokens += meta.thoughts_token_count or 0
    usage.total_tokens += meta.total_token_count or 0


def _parse_reply(response: Any) -> dict:
    fix = f"run again; if it keeps happening, try another model with {MODEL_ENV}"
    if not response.candidates:
        feedback = getattr(response, "prompt_feedback", None)
        reason = getattr(feedback, "block_reason", None)
        raise GeminiBadReply(f"Gemini returned no answer{f' (blocked: {reason})' if reason else ''}", fix)
    finish = str(response.candidates[0].finish_reason or "")
    text = response.text or ""
    try:
        data = json.loads(text)
    except ValueError:
        cut = " (the reply was cut at the output token limit)" if "MAX_TOKENS" in finish else ""
        raise GeminiBadReply(f"Gemini's reply is not valid JSON{cut}: {text[:200]!r}", fix) from None
    if not isinstance(data, dict):
        raise GeminiBadReply(f"Gemini's reply is JSON but not an object: {text[:200]!r}", fix)
    return data


# -- "Gemini is off", said once ------------------------------------------------------------------

OFF_MESSAGE = (f"Gemini is off: {API_KEY_ENV} is not set. Everything still works without it: "
               "recommendations come from the deterministic advisor alone, `dbarch ask` answers with the "
               "closest known question-SQL pair (labelled as such), `dbarch explain-sql` summarizes the plan. "
               f"Set {API_KEY_ENV} to add Gemini's second opinion.")
_off_lock = threading.Lock()
_off_announced = False


def announce_off(say: Callable[[str], None]) -> bool:
    """Say OFF_MESSAGE through `say` the first time in this process; True if it was said now."""
    global _off_announced
    with _off_lock:
        if _off_announced:
            return False
        _off_announced = True
    say(OFF_MESSAGE)
    return True


def reset_off_notice() -> None:
    """Forget that the notice was given (tests)."""
    global _off_announced
    with _off_lock:
        _off_announced = False


class GeminiResource(dg.ConfigurableResource):
    """Gemini for the second opinion and `ask`. Empty fields fall back to the environment when used:
    GEMINI_API_KEY, GEMINI_MODEL (default gemini-2.5-flash), GEMINI_BASE_URL (Google's endpoint)."""

    api_key: str = Field(default="", description=f"API key; empty means ${API_KEY_ENV} (no key: Gemini is off).")
    model: str = Field(default="", description=f"Model; empty means ${MODEL_ENV}, else {DEFAULT_MODEL}.")
    base_url: str = Field(default="", description=f"Endpoint; empty means ${BASE_URL_ENV}, else Google's.")
    timeout_s: float = Field(default=60.0, description="Per-request timeout in seconds.")
    max_retries: int = Field(default=3, description="Retries on 408/429/5xx and network errors.")
    backoff_s: float = Field(default=1.0, description="First backoff delay; doubles on each retry.")

    def resolved_key(self) -> str:
        return (self.api_key or os.environ.get(API_KEY_ENV, "")).strip()

    def resolved_model(self) -> str:
        return (self.model or os.environ.get(MODEL_ENV, "")).strip() or DEFAULT_MODEL

    def resolved_base_url(self) -> str | None:
        return (self.base_url or os.environ.get(BASE_URL_ENV, "")).strip() or None

    def enabled(self) -> bool:
        return bool(self.resolved_key())

    def client(self, say: Callable[[str], None] | None = None) -> GeminiClient | None:
        """A client, or None without a key (then the off notice is given once per process)."""
        key = self.resolved_key()
        if not key:
            announce_off(say or dg.get_dagster_logger("gemini").warning)
            return None
        return GeminiClient(key, model=self.resolved_model(), base_url=self.resolved_base_url(),
                            timeout_s=self.timeout_s, max_retries=self.max_retries, backoff_s=self.backoff_s)
