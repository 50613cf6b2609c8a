"""Access tokens (stored only as hashes), credentials given for peers and mirrors, and
signed, expiring upload URLs."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from registry.domain.errors import InvalidCredentialError

TOKEN_PREFIX = "myd_"
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


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
