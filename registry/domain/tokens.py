"""Access tokens (stored only as hashes) and signed, expiring upload URLs."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "myd_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, *parts: str) -> str:
    message = "\x1f".join(parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, signature: str, *parts: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, and a URL may hold any.
    return hmac.compare_digest(sign(secret, *parts).encode(), signature.encode())
