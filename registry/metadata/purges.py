"""History rewrites of a repo: the LFS files a repo holds, permanently deleting them (their
tree entries move to `purged_file`), and the commits a super-squash left behind (their trees
go, `squashed_commit` remembers them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy
from sqlalchemy import delete, func, insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from registry.metadata.tables import Commit, PurgedFile, Ref, SquashedCommit, TreeRow


@dataclass(frozen=True)
class LfsFile:
    """An LFS file some commit of a repo names: one of its paths, and its first commit's time."""

    sha256: str
    size: int
    path: str
    first_ms: int


@dataclass(frozen=True)
class Purged:
    """A file a commit named before it was permanently deleted."""

    sha256: str
    size: int
    purged_ms: int


class Purges:
    def __init__(self, session: Session) -> None:
        self._session = session

    def lfs_files(self, repo_id: int) -> list[LfsFile]:
        """Every LFS file a commit of the repo names, by SHA-256."""
        rows = self._session.execute(
            sqlalchemy.select(
                col(TreeRow.sha256),
                func.max(TreeRow.size),
                func.min(TreeRow.path),
                func.min(Commit.created_ms),
            )
            .join(Commit, col(Commit.id) == col(TreeRow.commit_id))
            .where(col(Commit.repo_id) == repo_id, col(TreeRow.lfs))
            .group_by(col(TreeRow.sha256))
            .order_by(col(TreeRow.sha256))
        ).all()
        return [LfsFile(sha, int(size), path, int(first)) for sha, size, path, first in rows]

    def purge(self, repo_id: int, sha256s: Iterable[str], at_ms: int) -> int:
        """Take the LFS files with these SHA-256 out of every commit of the repo (recorded in
        `purged_file`); returns how many tree entries went."""
        wanted = sorted(set(sha256s))
        of_repo = select(Commit.id).where(Commit.repo_id == repo_id)
        which = (
            col(TreeRow.commit_id).in_(of_repo),
            col(TreeRow.sha256).in_(wanted),
            col(TreeRow.lfs),
        )
        rows = self._session.execute(
            sqlalchemy.select(
                col(TreeRow.commit_id), col(TreeRow.path), col(TreeRow.sha256), col(TreeRow.size)
            ).where(*which)
        ).all()
        if not rows:
            return 0
        self._session.execute(
            insert(PurgedFile),
            [
                {
                    "commit_id": commit,
                    "path": path,
                    "repo_id": repo_id,
                    "sha256": sha,
                    "size": size,
                    "purged_ms": at_ms,
                }
                for commit, path, sha, size in rows
            ],
        )
        self._session.execute(delete(TreeRow).where(*which))
        return len(rows)

    def purged(self, commit_id: str, path: str) -> Purged | None:
        row = self._session.get(PurgedFile, (commit_id, path))
        return None if row is None else Purged(row.sha256, row.size, row.purged_ms)

    def unreachable(self, repo_id: int, head: str) -> set[str]:
        """The commits of `head`'s history that no ref of the repo reaches any more."""
        old = self._history(select(Commit.id).where(Commit.id == head))
        kept = self._history(select(Ref.commit_id).where(Ref.repo_id == repo_id))
        return old - kept

    def _history(self, start: SelectOfScalar[str]) -> set[str]:
        """The commits in `start` and all their ancestors."""
        walk = (
            sqlalchemy.select(col(Commit.id), col(Commit.parent))
            .where(col(Commit.id).in_(start))
            .cte("walk", recursive=True)
        )
        older = aliased(Commit)
        walk = walk.union(
            sqlalchemy.select(col(older.id), col(older.parent)).join(
                walk, col(older.id) == walk.c.parent
            )
        )
        return set(self._session.execute(sqlalchemy.select(walk.c.id)).scalars())

    def squash_away(self, repo_id: int, commit_ids: Iterable[str], at_ms: int) -> int:
        """Forget the trees of these commits and record them squashed (the commit rows stay);
        returns how many commits."""
        ids = sorted(set(commit_ids))
        if not ids:
            return 0
        self._session.execute(delete(TreeRow).where(col(TreeRow.commit_id).in_(ids)))
        self._session.execute(
            insert(SquashedCommit),
            [{"commit_id": c, "repo_id": repo_id, "squashed_ms": at_ms} for c in ids],
        )
        return len(ids)

    def squashed(self, commit_ids: Iterable[str]) -> set[str]:
        """Which of these commits a super-squash left behind."""
        wanted = sorted(set(commit_ids))
        found = self._session.exec(
            select(SquashedCommit.commit_id).where(col(SquashedCommit.commit_id).in_(wanted))
        ).all()
        return set(found)
