"""Commits and their trees (immutable once written, but for the history rewrites of
`registry.metadata.purges`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy
from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select

from registry.domain.commit import TreeEntry
from registry.domain.digest import Digest
from registry.domain.names import RECOVERED_FROM
from registry.domain.records import CommitRecord, RefRecord, RepoRecord, TreeFile
from registry.metadata.bulk import insert_rows
from registry.metadata.repos import record_of
from registry.metadata.tables import Commit, ModelHash, Ref, Repo, TreeRow, table_of

# "either": BLAKE3, SHA-256 or the SHA-256 after a safetensors header; "autov3": a prefix of
# the latter; "autov1": the legacy A1111 hash (see registry.domain.modelhashes).
HashKind = Literal["blake3", "sha256", "either", "sha256_prefix", "autov3", "autov1"]


@dataclass(frozen=True)
class RefFile:
    """A file of the commit a ref points at."""

    repo: RepoRecord
    ref: RefRecord
    file: TreeFile


# What `tree_file` reads a tree row from (the ORM's objects cost ~10x more per row).
TREE_COLUMNS = (
    col(TreeRow.path),
    col(TreeRow.blake3),
    col(TreeRow.sha256),
    col(TreeRow.size),
    col(TreeRow.lfs),
    col(TreeRow.git_sha1),
    col(TreeRow.last_commit),
)


def _record(row: Commit) -> CommitRecord:
    return CommitRecord(
        row.id, row.repo_id, row.parent, row.author, row.title, row.message, row.created_ms
    )


def carried(before: Mapping[str, tuple[str, str]], tree: Iterable[TreeEntry]) -> dict[str, str]:
    """Path -> last commit of the files of `tree` that a parent whose tree is `before` (path ->
    (BLAKE3 hex, last commit)) holds with the same bytes.

    Plain values rather than tree records: a replica needs this for every commit it applies,
    and on trees of many files building the records cost more than the statement."""
    found = {}
    for entry in tree:
        old = before.get(entry.path)
        if old is not None and old[0] == entry.blake3.hex:
            found[entry.path] = old[1]
    return found


def tree_file(values: Sequence[object]) -> TreeFile:
    """A tree file from a row of `TREE_COLUMNS`' values."""
    path, b3, sha256, size, lfs, git_sha1, last = values
    assert isinstance(path, str) and isinstance(b3, str) and isinstance(sha256, str)
    assert isinstance(size, int) and isinstance(last, str)
    assert git_sha1 is None or isinstance(git_sha1, str)
    return TreeFile(TreeEntry(path, Digest(b3), sha256, size, bool(lfs), git_sha1), last)


class Commits:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _hashed(self, wanted: ColumnElement[bool], limit: int) -> list[str]:
        """The blobs whose safetensors hashes match, looked up first: as a subquery inside the
        OR of `under_refs`, it made SQLite walk every tree of every ref (100 ms at 300 000
        files, against 3 ms)."""
        return list(self._session.exec(select(ModelHash.blake3).where(wanted).limit(limit)).all())

    def get(self, commit_id: str) -> CommitRecord | None:
        row = self._session.get(Commit, commit_id)
        return None if row is None else _record(row)

    def by_ids(self, ids: Iterable[str]) -> dict[str, CommitRecord]:
        rows = self._session.exec(select(Commit).where(col(Commit.id).in_(set(ids)))).all()
        return {r.id: _record(r) for r in rows}

    def existing(self, ids: Iterable[str]) -> set[str]:
        return set(self._session.exec(select(Commit.id).where(col(Commit.id).in_(set(ids)))).all())

    def brought_back(self, commit_id: str) -> bool:
        """Is there a commit that brought this lost one back (`modelyard recover` from a
        bucket: a new commit whose message names it)?"""
        marker = f"{RECOVERED_FROM}{commit_id}"
        found = self._session.exec(select(Commit.id).where(Commit.message == marker).limit(1))
        return found.first() is not None

    def of_repo(self, repo_id: int) -> list[CommitRecord]:
        rows = self._session.exec(select(Commit).where(Commit.repo_id == repo_id)).all()
        return [_record(r) for r in rows]

    def with_prefix(self, repo_id: int, prefix: str, limit: int) -> list[CommitRecord]:
        """Commits of the repo whose id starts with `prefix` (an abbreviated id)."""
        rows = self._session.exec(
            select(Commit)
            .where(Commit.repo_id == repo_id, col(Commit.id).startswith(prefix))
            .limit(limit)
        ).all()
        return [_record(r) for r in rows]

    def tree(self, commit_id: str) -> list[TreeFile]:
        """The commit's files, sorted by path."""
        rows = self._session.execute(
            sqlalchemy.select(*TREE_COLUMNS)
            .where(col(TreeRow.commit_id) == commit_id)
            .order_by(col(TreeRow.path))
        ).all()
        return [tree_file(r) for r in rows]

    def trees(self, commit_ids: Sequence[str]) -> dict[str, list[TreeFile]]:
        """Several commits' files, sorted by path, in one statement (a page of results)."""
        found: dict[str, list[TreeFile]] = {c: [] for c in commit_ids}
        if not commit_ids:
            return found
        rows = self._session.execute(
            sqlalchemy.select(col(TreeRow.commit_id), *TREE_COLUMNS)
            .where(col(TreeRow.commit_id).in_(list(commit_ids)))
            .order_by(col(TreeRow.commit_id), col(TreeRow.path))
        ).all()
        for row in rows:
            found[row[0]].append(tree_file(row[1:]))
        return found

    def paths_of(self, commit_ids: Iterable[str]) -> dict[str, dict[str, tuple[str, str]]]:
        """Several commits' trees as path -> (BLAKE3 hex, last commit), in one statement: what
        a replica needs of the parents of a batch's commits (see `carried`)."""
        wanted = set(commit_ids)
        found: dict[str, dict[str, tuple[str, str]]] = {c: {} for c in wanted}
        if not wanted:
            return found
        rows = self._session.execute(
            sqlalchemy.select(
                col(TreeRow.commit_id),
                col(TreeRow.path),
                col(TreeRow.blake3),
                col(TreeRow.last_commit),
            ).where(col(TreeRow.commit_id).in_(wanted))
        ).all()
        for commit_id, path, b3, last in rows:
            found[commit_id][path] = (b3, last)
        return found

    def last_commits(self, parent: str, tree: Iterable[TreeEntry]) -> dict[str, str]:
        """Path -> the commit that last changed it, for the files of `tree` that `parent`
        holds with the same BLAKE3 (what a child commit carries over)."""
        return carried(self.paths_of([parent])[parent], tree)

    def add(self, commit: CommitRecord, files: Iterable[TreeFile]) -> None:
        """A commit and its whole tree."""
        self.add_many([(commit, list(files))])

    def add_many(self, commits: Sequence[tuple[CommitRecord, Sequence[TreeFile]]]) -> None:
        """Commits and their whole trees, in two statements however many, of plain values past
        the ORM (its objects, even its bulk inserts, cost several times more per row, and a
        replica adds thousands of commits a batch). What the session has pending goes first."""
        if not commits:
            return
        self._session.flush()
        connection = self._session.connection()
        insert_rows(
            connection,
            table_of(Commit),
            [
                {
                    "id": c.id,
                    "repo_id": c.repo_id,
                    "parent": c.parent,
                    "author": c.author,
                    "title": c.title,
                    "message": c.message,
                    "created_ms": c.created_ms,
                }
                for c, _ in commits
            ],
        )
        rows = [
            {
                "commit_id": c.id,
                "path": f.entry.path,
                "blake3": f.entry.blake3.hex,
                "sha256": f.entry.sha256,
                "size": f.entry.size,
                "lfs": f.entry.lfs,
                "git_sha1": f.entry.git_sha1,
                "last_commit": f.last_commit,
            }
            for c, files in commits
            for f in files
        ]
        insert_rows(connection, table_of(TreeRow), rows)

    def under_refs(self, value: str, by: HashKind, limit: int) -> list[RefFile]:
        """Files with this hash in the commits refs point at, by repo and ref name."""
        match by:
            case "blake3":
                wanted = col(TreeRow.blake3) == value
            case "sha256":
                wanted = col(TreeRow.sha256) == value
            case "either":  # the same tensors under another header share the tail hash
                tails = self._hashed(col(ModelHash.tail_sha256) == value, limit)
                wanted = or_(
                    col(TreeRow.blake3) == value,
                    col(TreeRow.sha256) == value,
                    *([col(TreeRow.blake3).in_(tails)] if tails else []),
                )
            case "sha256_prefix":
                wanted = and_(col(TreeRow.sha256) >= value, col(TreeRow.sha256) < value + "g")
            case "autov3":
                tail = col(ModelHash.tail_sha256)
                wanted = col(TreeRow.blake3).in_(
                    self._hashed(and_(tail >= value, tail < value + "g"), limit)
                )
            case "autov1":
                wanted = col(TreeRow.blake3).in_(
                    self._hashed(col(ModelHash.autov1) == value, limit)
                )
        return self._under_refs_where(wanted, limit)

    def named(self, names: Iterable[str], limit: int) -> list[RefFile]:
        """Files under any ref whose base name, in lower case, is one of `names` (lower
        case), by repo and ref name; it costs what `at_heads_named` does, over every ref."""
        wanted = func.lower(_base_name()).in_(set(names))
        return self._under_refs_where(wanted, limit)

    def _under_refs_where(self, wanted: ColumnElement[bool], limit: int) -> list[RefFile]:
        rows = self._session.execute(
            sqlalchemy.select(*TREE_COLUMNS, Ref, Repo)
            .join(Ref, col(Ref.commit_id) == TreeRow.commit_id)
            .join(Repo, col(Repo.id) == Ref.repo_id)
            .where(wanted)
            .order_by(col(Repo.namespace), col(Repo.name), col(Ref.name))
            .limit(limit)
        ).all()
        return _ref_files(rows)

    def at_heads_named(self, names: Sequence[str], branch: str, limit: int) -> list[RefFile]:
        """Files whose base name is one of `names` (lower case) in the commits `branch` points
        at, by repo.

        No index serves this: it reads the files at those heads (joined to the tree by commit
        id, its key) once, each path's base name computed in SQL and looked up in the names
        (the cost grows with the files at the heads, not with the names). SQLite's lower()
        folds ASCII only, so there other letters match in their own case."""
        wanted = func.lower(_base_name()).in_(names)
        rows = self._session.execute(
            sqlalchemy.select(*TREE_COLUMNS, Ref, Repo)
            .join(Ref, col(Ref.commit_id) == TreeRow.commit_id)
            .join(Repo, col(Repo.id) == Ref.repo_id)
            .where(col(Ref.name) == branch, wanted)
            .order_by(col(Repo.namespace), col(Repo.name), col(TreeRow.path))
            .limit(limit)
        ).all()
        return _ref_files(rows)


def _base_name() -> ColumnElement[str]:
    """A tree path's part after its last `/`, in SQL both databases speak: rtrim strips the
    trailing characters that are not `/`, leaving the folder, which replace then removes."""
    path = col(TreeRow.path)
    return func.replace(path, func.rtrim(path, func.replace(path, "/", "")), "")


def _ref_files(rows: Iterable[Sequence[Any]]) -> list[RefFile]:
    """Rows of `TREE_COLUMNS`, then a Ref and its Repo."""
    return [
        RefFile(
            record_of(row[-1]),
            RefRecord(row[-2].name, row[-2].commit_id, row[-2].version),
            tree_file(row[:-2]),
        )
        for row in rows
    ]
