"""Discussions and pull requests of repos, and their events."""

from __future__ import annotations

import json

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from registry.domain.discussions import Discussion, Event
from registry.metadata.tables import Discussion as DiscussionRow
from registry.metadata.tables import DiscussionEvent as EventRow


class Discussions:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, repo_id: int, num: int) -> Discussion | None:
        row = self._session.get(DiscussionRow, (repo_id, num))
        return None if row is None else _discussion(row)

    def page(
        self,
        repo_id: int,
        *,
        author: str | None,
        pull_request: bool | None,
        statuses: tuple[str, ...] | None,
        start: int,
        limit: int,
    ) -> tuple[list[Discussion], int]:
        """A page of the repo's discussions, newest first, and how many match in all."""
        where: list[ColumnElement[bool]] = [col(DiscussionRow.repo_id) == repo_id]
        if author is not None:
            where.append(col(DiscussionRow.author) == author)
        if pull_request is not None:
            where.append(col(DiscussionRow.pull_request) == pull_request)
        if statuses is not None:
            where.append(col(DiscussionRow.status).in_(statuses))
        count = select(func.count()).select_from(DiscussionRow).where(*where)
        total = self._session.exec(count).one()
        rows = self._session.exec(
            select(DiscussionRow)
            .where(*where)
            .order_by(col(DiscussionRow.num).desc())
            .offset(start)
            .limit(limit)
        ).all()
        return [_discussion(r) for r in rows], int(total)

    def put(self, repo_id: int, d: Discussion) -> None:
        """Insert or replace the discussion `d.num` of the repo."""
        row = self._session.get(DiscussionRow, (repo_id, d.num)) or DiscussionRow(
            repo_id=repo_id,
            num=d.num,
            title="",
            author="",
            status="",
            pull_request=False,
            created_ms=0,
        )
        row.title, row.author, row.status = d.title, d.author, d.status
        row.pull_request, row.created_ms = d.pull_request, d.created_ms
        row.target, row.base, row.merge_commit = d.target, d.base, d.merge_commit
        self._session.add(row)

    def events(self, repo_id: int, num: int) -> list[Event]:
        rows = self._session.exec(
            select(EventRow)
            .where(EventRow.repo_id == repo_id, EventRow.num == num)
            .order_by(col(EventRow.seq))
        ).all()
        return [_event(r) for r in rows]

    def event(self, repo_id: int, num: int, event_id: str) -> Event | None:
        row = self._by_id(event_id)
        if row is None or (row.repo_id, row.num) != (repo_id, num):
            return None
        return _event(row)

    def put_event(self, repo_id: int, num: int, e: Event) -> None:
        """Insert or replace the event `e.id` of discussion `num`."""
        row = self._by_id(e.id) or EventRow(
            id=e.id, repo_id=repo_id, num=num, type="", author="", created_ms=0, data=""
        )
        row.repo_id, row.num, row.type, row.author = repo_id, num, e.type, e.author
        row.created_ms, row.edited_ms = e.created_ms, e.edited_ms
        row.data = json.dumps(dict(e.data), sort_keys=True)
        self._session.add(row)

    def _by_id(self, event_id: str) -> EventRow | None:
        return self._session.exec(select(EventRow).where(EventRow.id == event_id)).first()


def _discussion(row: DiscussionRow) -> Discussion:
    return Discussion(
        row.num,
        row.title,
        row.author,
        row.status,
        row.pull_request,
        row.created_ms,
        row.target,
        row.base,
        row.merge_commit,
    )


def _event(row: EventRow) -> Event:
    data = json.loads(row.data)
    return Event(row.id, row.type, row.author, row.created_ms, data, row.edited_ms)
