"""Users and the hashes of their tokens, with each token's lifetime and last use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from registry.domain.clock import now_ms
from registry.domain.tokens import TokenInfo
from registry.metadata.tables import Token, User


@dataclass(frozen=True)
class TokenHolder:
    """Who a stored token acts as, and until when."""

    id: int
    user: str
    is_admin: bool
    write: bool
    label: str
    expires_ms: int | None
    revoked_ms: int | None


class Accounts:
    def __init__(self, session: Session) -> None:
        self._session = session

    def holder(self, token_hash: str) -> TokenHolder | None:
        token = self._session.exec(select(Token).where(Token.hash == token_hash)).first()
        user = self._session.get(User, token.user) if token else None
        if token is None or token.id is None or user is None:
            return None
        return TokenHolder(
            token.id,
            user.name,
            user.is_admin,
            token.write,
            token.label,
            token.expires_ms,
            token.revoked_ms,
        )

    def has_admin(self) -> bool:
        return self._session.exec(select(User).where(User.is_admin)).first() is not None

    def ensure_user(self, name: str, *, admin: bool) -> None:
        """Create the user if new; make it an admin if asked (never the reverse)."""
        row = self._session.get(User, name)
        if row is None:
            self._session.add(User(name=name, is_admin=admin, created_ms=now_ms()))
        elif admin and not row.is_admin:
            row.is_admin = True
            self._session.add(row)

    def add_token(
        self, token_hash: str, user: str, *, write: bool, label: str, expires_ms: int | None
    ) -> None:
        """Keep a token's hash for `user` (nothing happens if it is kept already: a
        configured admin token revoked once stays revoked across restarts)."""
        if self._session.exec(select(Token).where(Token.hash == token_hash)).first() is None:
            self._session.add(
                Token(
                    hash=token_hash,
                    user=user,
                    write=write,
                    label=label,
                    created_ms=now_ms(),
                    expires_ms=expires_ms,
                )
            )

    def tokens(self, user: str | None) -> list[TokenInfo]:
        """The tokens not revoked, of `user` (None: everyone's), oldest first."""
        query = (
            select(Token, User)
            .join(User, col(User.name) == col(Token.user))
            .where(col(Token.revoked_ms).is_(None))
            .order_by(col(Token.id))
        )
        if user is not None:
            query = query.where(Token.user == user)
        return [_info(token, owner) for token, owner in self._session.exec(query)]

    def token(self, token_id: int) -> TokenInfo | None:
        token = self._session.get(Token, token_id)
        owner = self._session.get(User, token.user) if token else None
        return _info(token, owner) if token and owner else None

    def revoke(self, token_id: int, at_ms: int) -> None:
        """Mark a token revoked (once: the first time is the one kept)."""
        self._session.execute(
            update(Token)
            .where(col(Token.id) == token_id, col(Token.revoked_ms).is_(None))
            .values(revoked_ms=at_ms)
        )

    def mark_used(self, used: Mapping[int, int]) -> None:
        """Record tokens' last use (token id -> ms); an older time never replaces a newer
        one another process wrote."""
        for token_id, at_ms in used.items():
            self._session.execute(
                update(Token)
                .where(col(Token.id) == token_id)
                .where((col(Token.last_used_ms).is_(None)) | (col(Token.last_used_ms) < at_ms))
                .values(last_used_ms=at_ms)
            )


def _info(token: Token, owner: User) -> TokenInfo:
    assert token.id is not None  # a stored row has its id
    return TokenInfo(
        id=token.id,
        label=token.label,
        user=token.user,
        is_admin=owner.is_admin,
        write=token.write,
        created_ms=token.created_ms,
        expires_ms=token.expires_ms,
        last_used_ms=token.last_used_ms,
        revoked_ms=token.revoked_ms,
    )
