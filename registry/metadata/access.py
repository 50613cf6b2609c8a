"""Access requests to gated repos: who asked, and what became of it."""

from __future__ import annotations

from sqlmodel import Session, col, select

from registry.domain.records import AccessRequestRecord
from registry.metadata.tables import AccessRequest


def _record(row: AccessRequest) -> AccessRequestRecord:
    return AccessRequestRecord(row.repo_id, row.user, row.status, row.created_ms, row.updated_ms)


class AccessRequests:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, repo_id: int, user: str) -> AccessRequestRecord | None:
        row = self._session.get(AccessRequest, (repo_id, user))
        return None if row is None else _record(row)

    def put(self, repo_id: int, user: str, status: str, at_ms: int) -> AccessRequestRecord:
        """Make or update a user's request with `status`."""
        row = self._session.get(AccessRequest, (repo_id, user))
        if row is None:
            row = AccessRequest(
                repo_id=repo_id, user=user, status=status, created_ms=at_ms, updated_ms=at_ms
            )
        else:
            row.status, row.updated_ms = status, at_ms
        self._session.add(row)
        return _record(row)

    def with_status(self, repo_id: int, status: str) -> list[AccessRequestRecord]:
        """A repo's requests of one status, oldest first."""
        rows = self._session.exec(
            select(AccessRequest)
            .where(AccessRequest.repo_id == repo_id, AccessRequest.status == status)
            .order_by(col(AccessRequest.created_ms), col(AccessRequest.user))
        ).all()
        return [_record(r) for r in rows]
