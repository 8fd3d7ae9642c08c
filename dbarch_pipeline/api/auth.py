"""Bearer tokens for the admin API, from DBARCH_ADMIN_TOKENS (`read:TOKEN,admin:TOKEN2`).

A read token lists and searches; an admin token may also ask the database and start audits. A
presented token is compared with every configured one, in constant time (hmac.compare_digest on
SHA-256 digests, so neither the content nor the length of a token leaks through timing), and no
message ever quotes a token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

from ..errors import DbarchError

TOKENS_ENV = "DBARCH_ADMIN_TOKENS"
MIN_TOKEN_LENGTH = 16
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")   # printable ASCII, no spaces (they end a header value)
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Role(enum.IntEnum):
    READ = 1
    ADMIN = 2


ROLES = {"read": Role.READ, "admin": Role.ADMIN}


@dataclass(frozen=True)
class Token:
    role: Role
    digest: bytes
    secret: str   # kept for redaction only (the log filter removes it from any message)

    def __repr__(self) -> str:   # never print the secret, even in a traceback's locals
        return f"Token(role={self.role.name.lower()})"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def parse_tokens(spec: str) -> tuple[Token, ...]:
    """`read:TOKEN,admin:TOKEN2` -> tokens. Problems name the entry by position and role, never by
    its secret."""
    tokens = []
    for position, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        role_name, sep, secret = entry.partition(":")
        role_name = role_name.strip().lower()
        if not sep or role_name not in ROLES:
            raise DbarchError(f"{TOKENS_ENV} entry {position} does not start with a role "
                              f"({' or '.join(ROLES)}) and a colon",
                              "write entries as read:TOKEN or admin:TOKEN, separated by commas")
        if len(secret) < MIN_TOKEN_LENGTH or not _TOKEN_CHARS.match(secret):
            raise DbarchError(f"{TOKENS_ENV} entry {position} ({role_name}) is shorter than {MIN_TOKEN_LENGTH} "
                              "characters or holds spaces or non-ASCII characters",
                              f"generate one with {GENERATE}")
        tokens.append(Token(ROLES[role_name], _digest(secret), secret))
    return tuple(tokens)


def authenticate(authorization: str | None, tokens: tuple[Token, ...]) -> Role | None:
    """The role of the bearer token in an Authorization header, or None. Every configured token is
    compared (no early exit), so the time taken does not say which one nearly matched."""
    if not authorization:
        return None
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    digest = _digest(presented.strip())
    role = None
    for token in tokens:
        if hmac.compare_digest(digest, token.digest):
            role = token.role if role is None else max(role, token.role)
    return role
