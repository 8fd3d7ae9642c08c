"""Keeping secrets out of responses and logs: configured tokens, DSNs and passwords are replaced
before any text leaves the server (error bodies, audit failures, log records)."""

from __future__ import annotations

import logging
import re
from typing import Iterable

# postgresql://user:secret@host -> postgresql://user:***@host; password=secret -> password=***
_URL_PASSWORD = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.I)
_KEY_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)('[^']*'|\S+)", re.I)
MASK = "***"


class Redactor:
    """Replaces every configured secret (tokens, full DSNs, API keys) and any password inside a
    connection string."""

    def __init__(self, secrets: Iterable[str] = ()):
        # longest first, so a DSN is masked whole before a token that might be part of it
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}:{MASK}@", text)
        return _KEY_PASSWORD.sub(lambda m: f"{m.group('key')}{MASK}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message, its arguments and its traceback.
    Arguments are masked one by one, not merged into the message: formatters such as uvicorn's
    access formatter read them by position."""

    def __init__(self, redactor: Redactor):
        super().__init__("dbarch-redact")
        self.redactor = redactor

    def _mask(self, value: object) -> object:
        if isinstance(value, str):
            return self.redactor(value)
        if isinstance(value, BaseException):
            return self.redactor(str(value))
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redactor(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._mask(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[0] is not None:
            # formatters use exc_text when it is set: the traceback, masked
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
        return True


LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "dbarch", "dagster")


def install(redactor: Redactor, loggers: Iterable[str] = LOGGERS) -> RedactingFilter:
    """Attach the filter to every handler of these loggers (a logger's own filter would miss records
    propagated from its children; a handler's sees them all)."""
    flt = RedactingFilter(redactor)
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt
