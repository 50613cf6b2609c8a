"""Organisations and their members' roles."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import Session, col, select

from registry.domain.access import Membership
from registry.domain.clock import now_ms
from registry.metadata.tables import Org, OrgMember, User


@dataclass(frozen=True)
class Member:
    user: str
    role: str


class Orgs:
    def __init__(self, session: Session) -> None:
        self._session = session

    def exists(self, name: str) -> bool:
        return self._session.get(Org, name) is not None

    def user_exists(self, name: str) -> bool:
        return self._session.get(User, name) is not None

    def create(self, name: str) -> None:
        self._session.add(Org(name=name, created_ms=now_ms()))

    def names(self, member: str | None) -> list[str]:
        """Every org's name, or (with `member`) those the user belongs to; sorted."""
        if member is None:
            return list(self._session.exec(select(Org.name).order_by(col(Org.name))))
        query = select(OrgMember.org).where(OrgMember.user == member).order_by(col(OrgMember.org))
        return list(self._session.exec(query))

    def members(self, org: str) -> list[Member]:
        query = select(OrgMember).where(OrgMember.org == org).order_by(col(OrgMember.user))
        return [Member(m.user, m.role) for m in self._session.exec(query)]

    def memberships(self, user: str) -> tuple[Membership, ...]:
        query = select(OrgMember).where(OrgMember.user == user).order_by(col(OrgMember.org))
        return tuple(Membership(m.org, m.role) for m in self._session.exec(query))

    def set_member(self, org: str, user: str, role: str) -> None:
        """Add the user to the org with `role`, or change their role."""
        row = self._session.get(OrgMember, (org, user))
        if row is None:
            row = OrgMember(org=org, user=user, role=role)
        row.role = role
        self._session.add(row)

    def remove_member(self, org: str, user: str) -> bool:
        """Whether the user was a member (and is no longer)."""
        result = self._session.execute(
            delete(OrgMember).where(col(OrgMember.org) == org, col(OrgMember.user) == user)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult's
