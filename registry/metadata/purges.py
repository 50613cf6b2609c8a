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

from registry.domain.digest import Digest
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


@dataclass(frozen=True)
class Purge:
    """What permanently deleting files took out: how many tree entries, and each file by
    (SHA-256, BLAKE3)."""

    entries: int
    files: tuple[tuple[str, Digest], ...]


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

    def purge(self, repo_id: int, sha256s: Iterable[str], at_ms: int) -> Purge:
        """Take the LFS files with these SHA-256 out of every commit of the repo (recorded in
        `purged_file`); returns what went."""
        wanted = sorted(set(sha256s))
        of_repo = select(Commit.id).where(Commit.repo_id == repo_id)
        which = (
            col(TreeRow.commit_id).in_(of_repo),
            col(TreeRow.sha256).in_(wanted),
            col(TreeRow.lfs),
        )
        rows = self._session.execute(
            sqlalchemy.select(
                col(TreeRow.commit_id),
                col(TreeRow.path),
                col(TreeRow.sha256),
                col(TreeRow.size),
                col(TreeRow.blake3),
            ).where(*which)
        ).all()
        if not rows:
            return Purge(0, ())
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
                for commit, path, sha, size, _ in rows
            ],
        )
        self._session.execute(delete(TreeRow).where(*which))
        files = sorted({(sha, Digest(b3)) for _, _, sha, _, b3 in rows}, key=lambda f: f[0])
        return Purge(len(rows), tuple(files))

    def purged(self, commit_id: str, path: str) -> Purged | None:
        row = self._session.get(PurgedFile, (commit_id, path))
        return None if row is None else Purged(row.sha256, row.size, row.purged_ms)

    def unreachable(self, repo_id: int, head: str) -> list[str]:
        """The commits of `head`'s history that no ref of the repo reaches any more, `head`
        first, then its ancestors in order."""
        parents = self._history(select(Commit.id).where(Commit.id == head))
        kept = self._history(select(Ref.commit_id).where(Ref.repo_id == repo_id))
        found: list[str] = []
        at: str | None = head
        while at is not None and at in parents:
            if at not in kept:
                found.append(at)
            at = parents[at]
        return found

    def _history(self, start: SelectOfScalar[str]) -> dict[str, str | None]:
        """The commits in `start` and all their ancestors, each with its parent."""
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
        rows = self._session.execute(sqlalchemy.select(walk.c.id, walk.c.parent)).all()
        return {commit: parent for commit, parent in rows}

    def squash_away(self, repo_id: int, commit_ids: Iterable[str], at_ms: int) -> int:
        """Forget the trees of these commits of the repo and record them squashed (the commit
        rows stay); commits of another repo, or squashed already, are left as they are.
        Returns how many commits."""
        wanted = sorted(set(commit_ids))
        ids = sorted(
            self._session.exec(
                select(Commit.id).where(
                    Commit.repo_id == repo_id,
                    col(Commit.id).in_(wanted),
                    col(Commit.id).not_in(select(SquashedCommit.commit_id)),
                )
            ).all()
        )
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
