"""Who a request acts as, and the rules for what they may read and write."""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.errors import ForbiddenError, UnauthorizedError


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
# The operator at the node's own console (`modelyard peer add`, ... on its data dir, or the
# node's settings): the admin's rights.
CONSOLE = Principal("admin", is_admin=True, can_write=True, token_label="console")


def may_read(principal: Principal, *, private: bool, namespace: str) -> bool:
    """Public repos are for everyone; a private one for its namespace's user and the admin."""
    return not private or principal.is_admin or principal.user == namespace


def may_manage_tokens(principal: Principal, owner: str) -> bool:
    """A user lists and revokes their own tokens; the admin everyone's."""
    return principal.is_admin or (not principal.anonymous and principal.user == owner)


def require_admin(principal: Principal) -> None:
    if principal.anonymous:
        raise UnauthorizedError("This needs the admin token")
    if not principal.is_admin:
        raise ForbiddenError("Only the node's admin may do this")


def require_contributor(principal: Principal) -> None:
    """Opening a discussion or a pull request, commenting, uploading for a PR: any signed-in
    user with a write token, on any repo they can read."""
    if principal.anonymous:
        raise UnauthorizedError("This needs a token: pass one as a Bearer token")
    if not principal.can_write:
        raise ForbiddenError("This token is read-only; create one with --write")


def require_write(principal: Principal, namespace: str) -> None:
    if principal.anonymous:
        raise UnauthorizedError("Write access needs a token: pass one as a Bearer token")
    if not principal.can_write:
        raise ForbiddenError("This token is read-only; create one with --write")
    if not principal.is_admin and principal.user != namespace:
        raise ForbiddenError(f"You have no write access to namespace {namespace!r}")
