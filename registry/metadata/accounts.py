"""Users and the hashes of their tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from registry.domain.clock import now_ms
from registry.metadata.tables import Token, User


@dataclass(frozen=True)
class TokenHolder:
    """Who a stored token acts as."""

    user: str
    is_admin: bool
    write: bool
    label: str


class Accounts:
    def __init__(self, session: Session) -> None:
        self._session = session

    def holder(self, token_hash: str) -> TokenHolder | None:
        token = self._session.exec(select(Token).where(Token.hash == token_hash)).first()
        user = self._session.get(User, token.user) if token else None
        if token is None or user is None:
            return None
        return TokenHolder(user.name, user.is_admin, token.write, token.label)

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

    def add_token(self, token_hash: str, user: str, *, write: bool, label: str) -> None:
        """Keep a token's hash for `user` (nothing happens if it is kept already)."""
        if self._session.exec(select(Token).where(Token.hash == token_hash)).first() is None:
            self._session.add(
                Token(hash=token_hash, user=user, write=write, label=label, created_ms=now_ms())
            )
