"""Users and hashed tokens: who a bearer token stands for, and the tokens' lifetime.

Theory of operation: a token's lookup (with its user's org memberships) is cached by its hash,
so the hot read paths answer without I/O (`cached`). A cached entry keeps the token's expiry,
checked on every use, and is trusted for `recheck` seconds only: the next use after that reads
the row again. So a token revoked through this process stops working at once (its entry is
dropped), and one revoked by another process sharing the database (`modelyard token revoke`,
another server process) within `recheck` seconds; a change of a user's org memberships
likewise (`forget`). Uses are noted in memory and written by `flush_use` (a runtime worker,
every `recheck` seconds): one small write per interval whatever the traffic, so a last use
shown may be that late, and a crash loses at most one interval of them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from registry.domain.access import ANONYMOUS, Membership, Principal, may_manage_tokens
from registry.domain.clock import now_ms
from registry.domain.errors import (
    ForbiddenError,
    InvalidNameError,
    NameTakenError,
    TokenNotFoundError,
    UnauthorizedError,
)
from registry.domain.names import NAME_PART
from registry.domain.tokens import TokenInfo, check_usable, hash_token, new_token
from registry.metadata.accounts import TokenHolder
from registry.metadata.db import Database

logger = logging.getLogger(__name__)
ADMIN_USER = "admin"
DEFAULT_RECHECK = 10.0  # seconds; the node passes its `token_recheck_interval`


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    token_id: int
    expires_ms: int | None
    fresh_until: float  # time.monotonic(): read the row again from then on


class AuthService:
    def __init__(self, db: Database, recheck: float = DEFAULT_RECHECK) -> None:
        self._db = db
        self._recheck = recheck
        self._cache: dict[str, _Entry] = {}
        self._used: dict[int, int] = {}  # token id -> ms of its latest use, not yet written
        self._revocations = 0  # moves with each revocation here: a lookup racing one is not kept
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> Principal | None:
        """The principal of an already-seen token without I/O (anonymous for none); None
        when the token must be looked up (new, stale, or past its expiry)."""
        if not token:
            return ANONYMOUS
        entry = self._cache.get(hash_token(token))
        if entry is None or not _usable(entry):
            return None
        self._note_use(entry)
        return entry.principal

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; no token is anonymous.

        Raises:
            UnauthorizedError: an unknown token; TokenRevokedError or TokenExpiredError for
                one that was revoked or has expired.
        """
        if not token:
            return ANONYMOUS
        digest = hash_token(token)
        entry = self._cache.get(digest)
        if entry is None or not _usable(entry):
            entry = self._look_up(digest)
        self._note_use(entry)
        return entry.principal

    def _look_up(self, digest: str) -> _Entry:
        revocations = self._revocations
        with self._db.read() as tx:
            holder = tx.accounts.holder(digest)
            orgs = tx.orgs.memberships(holder.user) if holder else ()
        try:
            if holder is None:
                raise UnauthorizedError("Invalid credentials in Authorization header")
            check_usable(holder.revoked_ms, holder.expires_ms, now_ms())
        except UnauthorizedError:
            with self._lock:
                self._cache.pop(digest, None)
            raise
        entry = _entry(holder, orgs, time.monotonic() + self._recheck)
        with self._lock:
            if revocations == self._revocations:  # else it may have read the row before
                self._cache[digest] = entry
        return entry

    def _note_use(self, entry: _Entry) -> None:
        at = now_ms()
        with self._lock:
            self._used[entry.token_id] = at

    def flush_use(self) -> int:
        """Write the last use of the tokens used since the previous flush; how many."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        with self._db.write(invalidates=False) as tx:  # no cached answer shows it
            tx.accounts.mark_used(used)
        return len(used)

    def create_token(
        self,
        user: str,
        *,
        write: bool,
        admin: bool = False,
        label: str = "",
        token: str | None = None,
        expires_ms: int | None = None,
    ) -> str:
        """Create (or adopt, when `token` is given) a token; only its hash is stored.

        Args:
            expires_ms: when it stops working (ms since the epoch); None: never.
        """
        if not NAME_PART.match(user):
            raise InvalidNameError(f"Invalid user name {user!r}")
        token = token or new_token()
        with self._db.write() as tx:
            if tx.orgs.exists(user):
                raise NameTakenError(f"{user!r} is an org's name; a token acts as a user")
            tx.accounts.ensure_user(user, admin=admin)
            tx.accounts.add_token(
                hash_token(token), user, write=write or admin, label=label, expires_ms=expires_ms
            )
        return token

    def tokens(self, principal: Principal, user: str | None = None) -> list[TokenInfo]:
        """The tokens not revoked of `user`; without one, the principal's own (the admin's
        answer holds everyone's).

        Raises:
            UnauthorizedError: no token. ForbiddenError: another user's, asked by a non-admin.
        """
        if principal.anonymous:
            raise UnauthorizedError("Listing tokens needs a token")
        if user is not None and not may_manage_tokens(principal, user):
            raise ForbiddenError("Only the node's admin may list another user's tokens")
        with self._db.read() as tx:
            return tx.accounts.tokens(user or (None if principal.is_admin else principal.user))

    def revoke(self, principal: Principal, token_id: int) -> TokenInfo:
        """Revoke a token for good (again: nothing changes); it stops working in this
        process at once, and in others sharing the database within their recheck interval.

        Raises:
            UnauthorizedError: no token. TokenNotFoundError: no such token, or another
                user's asked by a non-admin (whether it exists is not told).
        """
        if principal.anonymous:
            raise UnauthorizedError("Revoking a token needs a token")
        with self._db.write() as tx:
            info = tx.accounts.token(token_id)
            if info is None or not may_manage_tokens(principal, info.user):
                raise TokenNotFoundError(f"No token {token_id} of yours")
            tx.accounts.revoke(token_id, now_ms())
        with self._lock:
            self._revocations += 1
            self._cache = {k: v for k, v in self._cache.items() if v.token_id != token_id}
        logger.info("token revoked id=%d user=%s by=%s", token_id, info.user, principal.user)
        return info

    def forget(self, user: str) -> None:
        """Drop the cached lookups of a user's tokens (their memberships changed): the next
        use reads them again."""
        with self._lock:
            self._revocations += 1
            self._cache = {k: v for k, v in self._cache.items() if v.principal.user != user}

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


def _entry(holder: TokenHolder, orgs: tuple[Membership, ...], fresh_until: float) -> _Entry:
    principal = Principal(
        holder.user, holder.is_admin, holder.write or holder.is_admin, holder.label, orgs
    )
    return _Entry(principal, holder.id, holder.expires_ms, fresh_until)


def _usable(entry: _Entry) -> bool:
    """Whether a cached entry may answer: read recently enough, and not past its expiry (an
    expired one is read again, which names the reason)."""
    if time.monotonic() >= entry.fresh_until:
        return False
    return entry.expires_ms is None or now_ms() < entry.expires_ms
