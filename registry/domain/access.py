"""Who a request acts as, and the rules for what they may read and write."""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.errors import ForbiddenError, InvalidError, UnauthorizedError

# An org member's role, weakest first: each holds the rights of those before it.
ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Membership:
    org: str
    role: str  # one of ROLES


@dataclass(frozen=True)
class Principal:
    user: str | None
    is_admin: bool = False
    can_write: bool = False
    token_label: str = ""
    orgs: tuple[Membership, ...] = ()  # the user's org memberships, read with the token

    @property
    def anonymous(self) -> bool:
        return self.user is None

    def role_in(self, org: str) -> str | None:
        """The principal's role in `org`, None when not a member."""
        return next((m.role for m in self.orgs if m.org == org), None)

    def readable_orgs(self) -> list[str]:
        return [m.org for m in self.orgs]

    def writable_namespaces(self) -> list[str]:
        """The user's own namespace and those of the orgs they write (not the admin's all)."""
        mine = [self.user] if self.user else []
        return mine + [m.org for m in self.orgs if _at_least(m.role, "write")]


ANONYMOUS = Principal(None)
# The operator at the node's own console (`modelyard peer add`, ... on its data dir, or the
# node's settings): the admin's rights.
CONSOLE = Principal("admin", is_admin=True, can_write=True, token_label="console")


def parse_role(role: str) -> str:
    """An org role as given (read, write or admin).

    Raises:
        InvalidError: any other word.
    """
    if role not in ROLES:
        raise InvalidError(f"Unknown org role {role!r}: use one of {', '.join(ROLES)}")
    return role


def _at_least(role: str | None, wanted: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(wanted)


def may_read(principal: Principal, *, private: bool, namespace: str) -> bool:
    """Public repos are for everyone; a private one for its namespace's user, the members of
    its namespace's org and the admin."""
    if not private or principal.is_admin or principal.user == namespace:
        return True
    return principal.role_in(namespace) is not None


def may_write_namespace(principal: Principal, namespace: str) -> bool:
    """The user's own namespace, an org's for its write and admin members; all for the admin."""
    if principal.is_admin or principal.user == namespace:
        return True
    return _at_least(principal.role_in(namespace), "write")


def may_manage_org(principal: Principal, org: str) -> bool:
    """An org's members are managed by its admins and the node's admin."""
    return principal.is_admin or _at_least(principal.role_in(org), "admin")


def passes_gate(principal: Principal, *, gated: str | None, namespace: str, accepted: bool) -> bool:
    """A gated repo's files are for its writers, the admin and users whose access request
    was accepted; an open repo's for whoever may read it."""
    return gated is None or accepted or may_write_namespace(principal, namespace)


def may_manage_tokens(principal: Principal, owner: str) -> bool:
    """A user lists and revokes their own tokens; the admin everyone's."""
    return principal.is_admin or (not principal.anonymous and principal.user == owner)


def require_admin(principal: Principal) -> None:
    if principal.anonymous:
        raise UnauthorizedError("This needs the admin token")
    if not principal.is_admin:
        raise ForbiddenError("Only the node's admin may do this")


def may_write(principal: Principal, namespace: str) -> bool:
    """What `require_write` allows, as a yes or no."""
    return principal.can_write and may_write_namespace(principal, namespace)


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
    if not may_write_namespace(principal, namespace):
        raise ForbiddenError(f"You have no write access to namespace {namespace!r}")
