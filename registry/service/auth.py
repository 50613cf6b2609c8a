"""Users, hashed tokens, and who may read or write what."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlmodel import select

from registry.domain.errors import ForbiddenError, InvalidNameError, UnauthorizedError
from registry.domain.names import NAME_PART
from registry.domain.tokens import hash_token, new_token
from registry.metadata.db import Database, now_ms
from registry.metadata.tables import Repo, Token, User

logger = logging.getLogger(__name__)
ADMIN_USER = "admin"


@dataclass(frozen=True)
class Principal:
    user: str | None
    is_admin: bool = False
    can_write: bool = False
    token_label: str = ""

    @property
    def anonymous(self) -> bool:
        return self.user is None


ANONYMOUS = Principal(None)


class AuthService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> Principal | None:
        """The principal of an already-seen token without I/O (anonymous for none)."""
        return ANONYMOUS if not token else self._cache.get(hash_token(token))

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; no token is anonymous."""
        if not token:
            return ANONYMOUS
        digest = hash_token(token)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        with self._db.read() as session:
            row = session.exec(select(Token).where(Token.hash == digest)).first()
            user = session.get(User, row.user) if row else None
        if row is None or user is None:
            raise UnauthorizedError("Invalid credentials in Authorization header")
        principal = Principal(user.name, user.is_admin, row.write or user.is_admin, row.label)
        with self._lock:
            self._cache[digest] = principal
        return principal

    def create_token(
        self,
        user: str,
        *,
        write: bool,
        admin: bool = False,
        label: str = "",
        token: str | None = None,
    ) -> str:
        """Create (or adopt, when `token` is given) a token; only its hash is stored."""
        if not NAME_PART.match(user):
            raise InvalidNameError(f"Invalid user name {user!r}")
        token = token or new_token()
        with self._db.write() as session:
            row = session.get(User, user)
            if row is None:
                session.add(User(name=user, is_admin=admin, created_ms=now_ms()))
            elif admin and not row.is_admin:
                row.is_admin = True
                session.add(row)
            digest = hash_token(token)
            if session.exec(select(Token).where(Token.hash == digest)).first() is None:
                session.add(
                    Token(
                        hash=digest,
                        user=user,
                        write=write or admin,
                        label=label,
                        created_ms=now_ms(),
                    )
                )
        return token

    def ensure_admin(self, configured: str | None) -> str | None:
        """Install the configured admin token, or create one on first start.

        Returns a newly created token (to be shown once), or None.
        """
        if configured:
            self.create_token(
                ADMIN_USER, write=True, admin=True, label="configured", token=configured
            )
            return None
        with self._db.read() as session:
            has_admin = session.exec(select(User).where(User.is_admin)).first() is not None
        if has_admin:
            return None
        return self.create_token(ADMIN_USER, write=True, admin=True, label="first start")


def can_read(principal: Principal, repo: Repo) -> bool:
    return may_read(principal, private=repo.private, namespace=repo.namespace)


def may_read(principal: Principal, *, private: bool, namespace: str) -> bool:
    return not private or principal.is_admin or principal.user == namespace


def require_admin(principal: Principal) -> None:
    if principal.anonymous:
        raise UnauthorizedError("This needs the admin token")
    if not principal.is_admin:
        raise ForbiddenError("Only the node's admin may do this")


def require_write(principal: Principal, namespace: str) -> None:
    if principal.anonymous:
        raise UnauthorizedError("Write access needs a token: pass one as a Bearer token")
    if not principal.can_write:
        raise ForbiddenError("This token is read-only; create one with --write")
    if not principal.is_admin and principal.user != namespace:
        raise ForbiddenError(f"You have no write access to namespace {namespace!r}")
