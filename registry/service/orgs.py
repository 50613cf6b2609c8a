"""Organisations: a namespace shared by its members, each with a role (read, write, admin).

The node's admin creates orgs; an org's admins (and the node's admin) manage its members.
Users and orgs share one set of names. The rules live in `registry.domain.access`; a member's
rights reach their tokens through `AuthService` (its cached lookups are dropped on a change).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from registry.domain.access import Principal, may_manage_org, parse_role, require_admin
from registry.domain.errors import (
    ForbiddenError,
    InvalidNameError,
    NameTakenError,
    OrgNotFoundError,
    UnauthorizedError,
    UserNotFoundError,
)
from registry.domain.names import NAME_PART
from registry.metadata.db import Database
from registry.metadata.orgs import Member
from registry.metadata.tx import Tx
from registry.service.auth import AuthService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrgInfo:
    name: str
    members: tuple[Member, ...]


class OrgService:
    def __init__(self, db: Database, auth: AuthService) -> None:
        self._db = db
        self._auth = auth

    def create(self, principal: Principal, name: str) -> OrgInfo:
        """Create an empty org (the node's admin only).

        Raises:
            UnauthorizedError, ForbiddenError: not the admin. InvalidNameError.
            NameTakenError: a user or an org has the name.
        """
        require_admin(principal)
        if not NAME_PART.match(name):
            raise InvalidNameError(f"Invalid org name {name!r}")
        with self._db.write() as tx:
            if tx.orgs.exists(name) or tx.orgs.user_exists(name):
                kind = "an org" if tx.orgs.exists(name) else "a user"
                raise NameTakenError(f"{name!r} is {kind} already", detail={"name": name})
            tx.orgs.create(name)
        logger.info("org created org=%s", name)
        return OrgInfo(name, ())

    def names(self, principal: Principal) -> list[str]:
        """Every org for the admin; the orgs a user belongs to for anyone else."""
        if principal.user is None:
            raise UnauthorizedError("Listing orgs needs a token")
        with self._db.read() as tx:
            return tx.orgs.names(None if principal.is_admin else principal.user)

    def get(self, principal: Principal, name: str) -> OrgInfo:
        """An org and its members, for its members and the admin.

        Raises:
            UnauthorizedError: no token. OrgNotFoundError: no such org, or not a member.
        """
        with self._db.read() as tx:
            return _visible(tx, principal, name)

    def set_member(self, principal: Principal, org: str, user: str, role: str) -> OrgInfo:
        """Add a user to an org with a role, or change their role (org admins, the admin).

        Raises:
            InvalidError: an unknown role. OrgNotFoundError, UserNotFoundError.
            ForbiddenError: a member who is not an org admin.
        """
        parse_role(role)
        with self._db.write() as tx:
            _managed(tx, principal, org)
            if not tx.orgs.user_exists(user):
                raise UserNotFoundError(f"No user {user!r} (`modelyard token create` makes one)")
            tx.orgs.set_member(org, user, role)
            info = _visible(tx, principal, org)
        self._auth.forget(user)
        logger.info("org member set org=%s user=%s role=%s by=%s", org, user, role, principal.user)
        return info

    def remove_member(self, principal: Principal, org: str, user: str) -> OrgInfo:
        """Take a user out of an org (org admins, the admin).

        Raises:
            OrgNotFoundError, UserNotFoundError (not a member), ForbiddenError.
        """
        with self._db.write() as tx:
            _managed(tx, principal, org)
            if not tx.orgs.remove_member(org, user):
                raise UserNotFoundError(f"{user!r} is not a member of org {org!r}")
            info = OrgInfo(org, tuple(tx.orgs.members(org)))
        self._auth.forget(user)
        logger.info("org member removed org=%s user=%s by=%s", org, user, principal.user)
        return info


def _visible(tx: Tx, principal: Principal, name: str) -> OrgInfo:
    if principal.user is None:
        raise UnauthorizedError("Reading an org needs a token")
    members = tx.orgs.members(name) if tx.orgs.exists(name) else None
    if members is None or not (
        principal.is_admin or any(m.user == principal.user for m in members)
    ):
        raise OrgNotFoundError(f"No org {name!r}", detail={"org": name})
    return OrgInfo(name, tuple(members))


def _managed(tx: Tx, principal: Principal, org: str) -> None:
    """Refuse who may not manage the org's members: 404 to outsiders, 403 to members."""
    _visible(tx, principal, org)
    if not may_manage_org(principal, org):
        raise ForbiddenError(f"Only an admin of org {org!r} may manage its members")
