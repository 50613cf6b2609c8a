"""Branches, tags and PR refs of repos, each with the version of its last move."""

from __future__ import annotations

from sqlmodel import Session, col, select

from registry.domain.records import RefRecord
from registry.metadata.tables import Ref


class Refs:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, repo_id: int, name: str) -> RefRecord | None:
        row = self._session.get(Ref, (repo_id, name))
        return None if row is None else RefRecord(row.name, row.commit_id, row.version)

    def of_repo(self, repo_id: int) -> list[RefRecord]:
        """Sorted by name."""
        rows = self._session.exec(
            select(Ref).where(Ref.repo_id == repo_id).order_by(col(Ref.name))
        ).all()
        return [RefRecord(r.name, r.commit_id, r.version) for r in rows]

    def set(self, repo_id: int, name: str, commit_id: str, version: int) -> None:
        row = self._session.get(Ref, (repo_id, name))
        if row is None:
            row = Ref(repo_id=repo_id, name=name, commit_id=commit_id, version=version)
        row.commit_id, row.version = commit_id, version
        self._session.add(row)

    def delete(self, repo_id: int, name: str) -> bool:
        """False when there was no such ref."""
        row = self._session.get(Ref, (repo_id, name))
        if row is None:
            return False
        self._session.delete(row)
        return True
