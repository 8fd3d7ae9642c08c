"""Passwords never reach a message, a log or a stored row.

`scrub(text, conninfo)` removes a DSN's password from any text (an error message that quotes the
DSN, for instance), whether or not the DSN parses; `redact(conninfo)` is the DSN fit to show.

>>> scrub('invalid URI: "postgresql://u:s3cret@[::1/db"', "postgresql://u:s3cret@[::1/db")
'invalid URI: "postgresql://u:***@[::1/db"'
>>> redact("password='s3cret host=x")
'password=***'
>>> redact("postgresql://u:s3cret@h:5432/app")
'postgresql://u@h:5432/app'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]*)", re.I)


def passwords_in(conninfo: str) -> set[str]:
    """Every spelling of the password a DSN carries (parsed, raw, percent-decoded)."""
    found: set[str] = set()
    try:
        pw = conninfo_to_dict(conninfo).get("password")
        if pw:
            found.add(str(pw))
    except (psycopg.ProgrammingError, ValueError):
        pass
    for pattern in (_URI_PASSWORD, _KV_PASSWORD, _QUERY_PASSWORD):
        for m in pattern.finditer(conninfo):
            raw = m.group("pw").strip("'")
            if raw:
                found.add(raw)
                try:
                    found.add(unquote(raw))
                except ValueError:
                    pass
    return {p for p in found if p}


def scrub(text: str, *conninfos: str) -> str:
    """`text` with the passwords of `conninfos` (and any password a DSN in it carries) masked."""
    out = text
    for info in conninfos:
        for pw in sorted(passwords_in(info), key=len, reverse=True):
            out = out.replace(pw, "***")
    out = _URI_PASSWORD.sub(lambda m: m.group("head") + ("***" if m.group("pw") else "") + m.group("at"), out)
    out = _KV_PASSWORD.sub(lambda m: m.group("head") + "***", out)
    return _QUERY_PASSWORD.sub(lambda m: m.group("head") + "***", out)


def redact(conninfo: str) -> str:
    """The DSN without its password, for messages and metadata."""
    try:
        params = conninfo_to_dict(conninfo)
    except (psycopg.ProgrammingError, ValueError):
        return scrub(conninfo, conninfo)
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    user = params.get("user", "")
    dbname = params.get("dbname", "")
    return f"postgresql://{user}@{host}:{port}/{dbname}"
