"""What the status page shows of a node's activity: its newest commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from registry.metadata.repos import record_of
from registry.metadata.tables import Commit, Repo


@dataclass(frozen=True)
class RecentCommit:
    repo: str
    commit: str
    title: str
    author: str
    created_ms: int


class Activity:
    def __init__(self, session: Session) -> None:
        self._session = session

    def recent_commits(self, limit: int) -> list[RecentCommit]:
        """The newest commits of public repos, newest first (the status page is public)."""
        rows = self._session.exec(
            select(Commit, Repo)
            .join(Repo, col(Repo.id) == Commit.repo_id)
            .where(col(Repo.private).is_(False))
            .order_by(col(Commit.created_ms).desc())
            .limit(limit)
        ).all()
        return [
            RecentCommit(record_of(r).repo.full_name, c.id, c.title, c.author, c.created_ms)
            for c, r in rows
        ]
