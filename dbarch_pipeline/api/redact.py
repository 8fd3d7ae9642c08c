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
    """A logging filter that formats the record and masks secrets in its message and traceback."""

    def __init__(self, redactor: Redactor):
        super().__init__("dbarch-redact")
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:   # a broken format string: keep the raw text
            message = str(record.msg)
        record.msg, record.args = self.redactor(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.msg}\n{self.redactor(formatted)}"
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
