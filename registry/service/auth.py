"""Users and hashed tokens: who a bearer token stands for."""

from __future__ import annotations

import logging
import threading

from registry.domain.access import ANONYMOUS, Principal
from registry.domain.errors import InvalidNameError, UnauthorizedError
from registry.domain.names import NAME_PART
from registry.domain.tokens import hash_token, new_token
from registry.metadata.db import Database

logger = logging.getLogger(__name__)
ADMIN_USER = "admin"


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
        with self._db.read() as tx:
            holder = tx.accounts.holder(digest)
        if holder is None:
            raise UnauthorizedError("Invalid credentials in Authorization header")
        principal = Principal(
            holder.user, holder.is_admin, holder.write or holder.is_admin, holder.label
        )
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
        with self._db.write() as tx:
            tx.accounts.ensure_user(user, admin=admin)
            tx.accounts.add_token(hash_token(token), user, write=write or admin, label=label)
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
        with self._db.read() as tx:
            has_admin = tx.accounts.has_admin()
        if has_admin:
            return None
        return self.create_token(ADMIN_USER, write=True, admin=True, label="first start")
