"""Branches, tags and PR refs of repos, each with the version of its last move."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import inspect
from sqlmodel import Session, col, select

from registry.domain.records import RefRecord
from registry.metadata.tables import Ref


class Refs:
    """Theory of operation: a replica reads the refs of a whole batch's repos at once
    (`versions`) and says which repos it just made (`none_yet`); sets and deletes of those
    repos' refs then read nothing, so they do not flush the transaction's pending writes
    one by one."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._rows: dict[int, dict[str, Ref]] = {}  # by repo and name: read or added here
        self._complete: set[int] = set()  # repos all of whose refs are in `_rows`

    def get(self, repo_id: int, name: str) -> RefRecord | None:
        row = self._session.get(Ref, (repo_id, name))
        return None if row is None else RefRecord(row.name, row.commit_id, row.version)

    def of_repo(self, repo_id: int) -> list[RefRecord]:
        """Sorted by name."""
        rows = self._session.exec(
            select(Ref).where(Ref.repo_id == repo_id).order_by(col(Ref.name))
        ).all()
        return [RefRecord(r.name, r.commit_id, r.version) for r in rows]

    def versions(self, repo_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Each repo's refs with the version of their last move, in one statement."""
        wanted = set(repo_ids)
        found: dict[int, dict[str, int]] = {r: {} for r in wanted}
        if wanted:
            for row in self._session.exec(select(Ref).where(col(Ref.repo_id).in_(wanted))):
                found[row.repo_id][row.name] = row.version
                self._rows.setdefault(row.repo_id, {})[row.name] = row
            self._complete |= wanted
        return found

    def none_yet(self, repo_id: int) -> None:
        """The repo was made in this transaction: it has no refs (whatever a deleted repo of
        the same id had)."""
        self._rows[repo_id] = {}
        self._complete.add(repo_id)

    def set(self, repo_id: int, name: str, commit_id: str, version: int) -> None:
        row = self._row(repo_id, name)
        if row is None:
            row = Ref(repo_id=repo_id, name=name, commit_id=commit_id, version=version)
            self._rows.setdefault(repo_id, {})[name] = row
        row.commit_id, row.version = commit_id, version
        self._session.add(row)

    def delete(self, repo_id: int, name: str) -> bool:
        """False when there was no such ref."""
        row = self._row(repo_id, name)
        if row is None:
            return False
        if inspect(row).pending:  # set in this transaction and not written yet
            self._session.expunge(row)
        else:
            self._session.delete(row)
        self._rows.get(repo_id, {}).pop(name, None)
        return True

    def _row(self, repo_id: int, name: str) -> Ref | None:
        held = self._rows.get(repo_id, {})
        if name in held or repo_id in self._complete:
            return held.get(name)
        return self._session.get(Ref, (repo_id, name))
