"""Access tokens (stored only as hashes; what a listing shows of one, when one may be used),
credentials given for peers and mirrors, and signed, expiring upload URLs."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from registry.domain.errors import (
    InvalidCredentialError,
    InvalidError,
    TokenExpiredError,
    TokenRevokedError,
)

TOKEN_PREFIX = "myd_"
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Rights = Literal["read", "write", "admin"]


@dataclass(frozen=True)
class TokenInfo:
    """What a listing shows of a token: never the token, nor its hash."""

    id: int
    label: str
    user: str
    is_admin: bool
    write: bool
    created_ms: int
    expires_ms: int | None
    last_used_ms: int | None
    revoked_ms: int | None

    @property
    def rights(self) -> Rights:
        """An admin user's tokens carry the admin's rights, whatever they were created with."""
        return "admin" if self.is_admin else "write" if self.write else "read"

    def expired(self, now: int) -> bool:
        return self.expires_ms is not None and now >= self.expires_ms


def check_usable(revoked_ms: int | None, expires_ms: int | None, now: int) -> None:
    """Refuse a revoked or expired token, each with its own code, so a client can tell a
    token to replace from a typo."""
    if revoked_ms is not None:
        raise TokenRevokedError("This token was revoked")
    if expires_ms is not None and now >= expires_ms:
        raise TokenExpiredError("This token has expired")


def parse_duration(text: str) -> int:
    """Seconds of a duration written as a count and a unit: 90m, 12h, 30d (also s and w)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidError(
            f"Invalid duration {text!r}: a whole number and a unit, e.g. 90m, 12h, 30d "
            "(s, m, h, d or w)"
        )
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_credential(token: str | None, what: str) -> str | None:
    """A peer's or mirror's token as given (None for none), if it is printable ASCII without
    spaces: anything else breaks the Authorization header, and the header error would quote
    the token (into logs and status)."""
    if not token:
        return None
    if not _PRINTABLE.fullmatch(token):
        raise InvalidCredentialError(
            f"{what} must be printable ASCII without spaces or line breaks (a stray newline?)"
        )
    return token


def sign(secret: str, *parts: str) -> str:
    message = "\x1f".join(parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, signature: str, *parts: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, and a URL may hold any.
    return hmac.compare_digest(sign(secret, *parts).encode(), signature.encode())
