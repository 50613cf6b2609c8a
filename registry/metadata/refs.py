"""Branches, tags and PR refs of repos, each with the version of its last move."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy
from sqlalchemy import bindparam, inspect, update
from sqlmodel import Session, col, select

from registry.domain.records import RefRecord
from registry.metadata.bulk import insert_rows
from registry.metadata.tables import Ref, table_of

_MOVE = (
    update(Ref)
    .where(col(Ref.repo_id) == bindparam("rid"), col(Ref.name) == bindparam("ref"))
    .values(commit_id=bindparam("commit_id"), version=bindparam("version"))
)


class Refs:
    """Theory of operation: a replica reads the refs of a whole batch's repos at once
    (`versions`) and says which repos it just made (`none_yet`); sets and deletes of those
    repos' refs then read nothing, so they do not flush the transaction's pending writes
    one by one."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._rows: dict[int, dict[str, Ref]] = {}  # by repo and name: read or added here
        self._present: dict[int, set[str]] = {}  # refs known to exist, not in `_rows`
        self._complete: set[int] = set()  # repos all of whose refs are in those two

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
        """Each repo's refs with the version of their last move, in one statement (plain
        columns: a replica reads thousands a batch)."""
        wanted = set(repo_ids)
        found: dict[int, dict[str, int]] = {r: {} for r in wanted}
        if wanted:
            rows = self._session.execute(
                sqlalchemy.select(col(Ref.repo_id), col(Ref.name), col(Ref.version)).where(
                    col(Ref.repo_id).in_(wanted)
                )
            )
            for repo_id, name, version in rows:
                found[repo_id][name] = version
            for repo_id in wanted - self._complete:
                self._present[repo_id] = set(found[repo_id]) - self._rows.get(repo_id, {}).keys()
            self._complete |= wanted
        return found

    def none_yet(self, repo_id: int) -> None:
        """The repo was made in this transaction: it has no refs (whatever a deleted repo of
        the same id had)."""
        self._rows[repo_id] = {}
        self._present[repo_id] = set()  # an id SQLite gave a repo deleted before may come back
        self._complete.add(repo_id)

    def set(self, repo_id: int, name: str, commit_id: str, version: int) -> None:
        row = self._row(repo_id, name)
        if row is None:
            row = Ref(repo_id=repo_id, name=name, commit_id=commit_id, version=version)
            self._rows.setdefault(repo_id, {})[name] = row
        row.commit_id, row.version = commit_id, version
        self._session.add(row)

    def set_many(self, moves: Mapping[tuple[int, str], tuple[str, int]]) -> None:
        """`set` for many refs, (repo id, name) -> (commit, version), in a statement for those
        known not to exist (of repos made in this transaction, or whose refs were all read)
        and one for those known to exist, of plain values; the rest one by one."""
        new, moved = [], []
        for (repo_id, name), (commit_id, version) in moves.items():
            if name in self._rows.get(repo_id, {}) or repo_id not in self._complete:
                self.set(repo_id, name, commit_id, version)
            elif name in self._present.get(repo_id, set()):
                moved.append(
                    {"rid": repo_id, "ref": name, "commit_id": commit_id, "version": version}
                )
            else:
                new.append(
                    {"repo_id": repo_id, "name": name, "commit_id": commit_id, "version": version}
                )
                self._present.setdefault(repo_id, set()).add(name)
        if new or moved:
            self._session.flush()  # a delete of the same ref pending goes first
            connection = self._session.connection()
            insert_rows(connection, table_of(Ref), new)
            if moved:
                connection.execute(_MOVE, moved)

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
        self._present.get(repo_id, set()).discard(name)
        return True

    def _row(self, repo_id: int, name: str) -> Ref | None:
        held = self._rows.get(repo_id, {})
        if name in held:
            return held[name]
        if repo_id in self._complete and name not in self._present.get(repo_id, set()):
            return None
        return self._session.get(Ref, (repo_id, name))
