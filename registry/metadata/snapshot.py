"""Bulk reads for snapshots: the log up to a serial, and the replicable state in one pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session, col, select

from registry.domain.access import Principal
from registry.domain.changes import ChangeEntry
from registry.metadata.changelog import entry_of
from registry.metadata.repos import visible_to
from registry.metadata.tables import Change as ChangeRow
from registry.metadata.tables import Commit, Ref, Repo

ROWS = 2000  # rows fetched at a time from the driver


@dataclass(frozen=True)
class RepoState:
    """What replicates of a repo: who it is, where it lives, what it shows."""

    key: str
    home: str
    incarnation: str
    private: bool
    gated: str | None
    refs: tuple[tuple[str, str, int], ...]  # (name, commit, home version), by name
    commits: tuple[str, ...]  # ids, sorted


class SnapshotReads:
    def __init__(self, session: Session) -> None:
        self._session = session

    def entries(self, after: int, upto: int, limit: int) -> list[ChangeEntry]:
        """Up to `limit` entries with `after < serial <= upto`, in order, abandoned ones left
        out (as the feed leaves them out)."""
        rows = self._session.exec(
            select(ChangeRow)
            .where(
                col(ChangeRow.serial) > after,
                col(ChangeRow.serial) <= upto,
                col(ChangeRow.abandoned_ms).is_(None),
            )
            .order_by(col(ChangeRow.serial))
            .limit(limit)
        ).all()
        return [entry_of(r) for r in rows]

    def state(self, principal: Principal) -> Iterator[RepoState]:
        """Every repo the reader may see, by key, with its refs and commits."""
        refs: dict[int, list[tuple[str, str, int]]] = {}
        for ref in self._session.exec(select(Ref).order_by(col(Ref.name))):
            refs.setdefault(ref.repo_id, []).append((ref.name, ref.commit_id, ref.version))
        commits: dict[int, list[str]] = {}
        for repo_id, commit_id in self._session.exec(
            select(Commit.repo_id, Commit.id).order_by(col(Commit.id))
        ):
            commits.setdefault(repo_id, []).append(commit_id)
        repos = self._session.exec(select(Repo).where(visible_to(principal)))
        for row in sorted(repos, key=lambda r: (r.type, r.namespace, r.name)):
            assert row.id is not None, "a stored row"
            yield RepoState(
                f"{row.type}/{row.namespace}/{row.name}",
                row.home_node,
                row.incarnation,
                row.private,
                row.gated,
                tuple(refs.get(row.id, ())),
                tuple(commits.get(row.id, ())),
            )
