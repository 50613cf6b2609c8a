"""Writes to a repo's history: commits of file operations, branches, tags, preupload."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.changes import RefDelete
from registry.domain.commit import TreeEntry, parent_dirs
from registry.domain.digest import REGULAR_FILE_MAX, Hashes
from registry.domain.discussions import Discussion
from registry.domain.errors import (
    EntryNotFoundError,
    InvalidPathError,
    MissingObjectError,
    ParentMismatchError,
    ProtectedRefError,
    RefExistsError,
    RevisionNotFoundError,
    SizeMismatchError,
)
from registry.domain.names import RepoId, check_ref_name
from registry.domain.patterns import ignore_spec, lfs_spec
from registry.domain.records import RepoRecord
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.discussions import (
    committable_pr,
    open_discussion,
    pr_commit,
    pr_number,
    pr_repo,
    pr_target,
)
from registry.service.identity import NodeIdentity
from registry.service.reads import resolve_commit
from registry.service.repos import (
    NewCommit,
    RepoService,
    move_ref,
    writable_repo,
    write_commit,
)
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
STALE_PARENT_MESSAGE = (
    "The branch was updated since you opened this page. Please refresh and try again."
)


@dataclass(frozen=True)
class AddBytes:
    path: str
    data: bytes


@dataclass(frozen=True)
class AddLfs:
    path: str
    sha256: str
    size: int | None  # absent for copies of LFS files


@dataclass(frozen=True)
class Delete:
    path: str
    folder: bool


Operation = AddBytes | AddLfs | Delete


@dataclass(frozen=True)
class PreuploadFile:
    path: str
    size: int


@dataclass(frozen=True)
class PreuploadAnswer:
    path: str
    lfs: bool
    ignored: bool
    oid: str | None


@dataclass(frozen=True)
class CommitResult:
    sha: str
    pr_number: int | None


class CommitService:
    def __init__(
        self, db: Database, blobs: BlobStore, node: NodeIdentity, repos: RepoService
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node
        self._repos = repos

    def commit(
        self,
        principal: Principal,
        repo: RepoId,
        revision: str,
        *,
        title: str,
        message: str,
        operations: list[Operation],
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> CommitResult:
        self.require_writable(principal, repo, revision, create_pr)  # fail fast, no bytes
        added = {op.path: self._entry(op) for op in operations if not isinstance(op, Delete)}
        author = principal.user or ""
        with self._db.write() as tx:
            found, pr = self._committable(tx, principal, repo, revision, create_pr)
            head = resolve_commit(tx, found, revision)
            if parent_commit and not head.id.startswith(parent_commit.lower()):
                # The Hub's own words (tools match on them); ours go in the detail.
                raise ParentMismatchError(
                    STALE_PARENT_MESSAGE,
                    detail={
                        "revision": revision,
                        "parent_commit": parent_commit,
                        "head": head.id,
                        "explanation": f"The branch {revision} was updated since "
                        f"{parent_commit}: its head is now {head.id}. Pull and retry.",
                    },
                )
            files = tx.commits.tree(head.id)
            tree = {f.path: f.entry for f in files}
            changed = _apply(tree, operations, added)
            if create_pr:
                opened = ("open", pr_target(tx, found, revision), head.id)
                pr = open_discussion(tx, self._node, found, author, title, message, pr=opened)
            ref = pr.ref if pr is not None else self._target_ref(tx, found, revision)
            new = NewCommit(
                head.id,
                author,
                title,
                message,
                list(tree.values()),
                changed,
                {f.path: f.last_commit for f in files},
            )
            sha = write_commit(tx, self._node, found, new, ref)
            if pr is not None:
                pr_commit(tx, self._node, found, pr, author, title, sha)
        logger.info("commit repo=%s ref=%s commit=%s ops=%d", repo, ref, sha, len(operations))
        return CommitResult(sha, pr.num if create_pr and pr is not None else None)

    def require_writable(
        self, principal: Principal, repo: RepoId, revision: str, create_pr: bool = False
    ) -> None:
        """Refuse now what a commit by `principal` to `revision` would be refused for.

        Raises:
            RepoNotFoundError, UnauthorizedError, ForbiddenError, RevisionNotFoundError, or
            NotHomeError (a replica: writes go to the repo's home).
        """
        with self._db.read() as tx:
            found, _ = self._committable(tx, principal, repo, revision, create_pr)
            resolve_commit(tx, found, revision)
            if create_pr:
                pr_target(tx, found, revision)

    def _committable(
        self, tx: Tx, principal: Principal, repo: RepoId, revision: str, create_pr: bool
    ) -> tuple[RepoRecord, Discussion | None]:
        """The repo if the principal may commit to `revision` (a PR: any contributor; a PR's
        ref: its author or a writer; else a writer), and the PR committed to, if any."""
        num = pr_number(revision)
        if not create_pr and num is None:
            return writable_repo(tx, principal, repo, self._node), None
        found = pr_repo(tx, principal, repo, self._node)
        if create_pr:
            return found, None
        assert num is not None
        pr = committable_pr(tx, principal, found, num)
        if pr is None:  # a PR ref made before PRs were kept: writers only
            return writable_repo(tx, principal, repo, self._node), None
        return found, pr

    def _entry(self, op: AddBytes | AddLfs) -> TreeEntry:
        if isinstance(op, AddBytes):
            stored = self._repos.store_bytes(op.data)
            return TreeEntry(
                op.path, stored.blake3, stored.sha256, stored.size, False, stored.git_sha1
            )
        with self._db.read() as tx:
            blob = tx.blobs.by_sha256(op.sha256)
        if blob is None or self._blobs.stat(blob.digest) is None:
            raise MissingObjectError(
                f"LFS object {op.sha256} for {op.path!r} was never uploaded",
                detail={"path": op.path, "oid": op.sha256},
            )
        if op.size is not None and op.size != blob.size:
            raise SizeMismatchError(
                f"LFS object {op.sha256} has {blob.size} bytes, the commit says {op.size}",
                detail={"path": op.path},
            )
        return TreeEntry(op.path, blob.digest, blob.sha256, blob.size, True, blob.git_sha1)

    def _target_ref(self, tx: Tx, repo: RepoRecord, revision: str) -> str:
        for name in [revision] if revision.startswith("refs/") else [f"refs/heads/{revision}"]:
            if tx.refs.get(repo.id, name) is not None and not name.startswith("refs/tags/"):
                return name
        raise RevisionNotFoundError(
            f"Invalid rev id: {revision} (commits go to a branch or a refs/pr/N ref)"
        )

    def create_branch(
        self, principal: Principal, repo: RepoId, branch: str, starting_point: str | None
    ) -> None:
        check_ref_name(branch)
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            start = resolve_commit(tx, found, starting_point or "main")
            self._new_ref(tx, found, f"refs/heads/{branch}", start.id)

    def create_tag(self, principal: Principal, repo: RepoId, revision: str, tag: str) -> None:
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            # The revision tagged is checked before the tag's name, as on the Hub: a tag of a
            # revision that does not exist is 404 RevisionNotFound whatever its name.
            target = resolve_commit(tx, found, revision)
            check_ref_name(tag)
            self._new_ref(tx, found, f"refs/tags/{tag}", target.id)

    def _new_ref(self, tx: Tx, repo: RepoRecord, ref: str, sha: str) -> None:
        if tx.refs.get(repo.id, ref) is not None:
            raise RefExistsError(f"Reference {ref} already exists")
        move_ref(tx, self._node, repo, ref, sha)

    def delete_ref(self, principal: Principal, repo: RepoId, ref: str) -> None:
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)  # who asks comes first
            if ref == "refs/heads/main":
                raise ProtectedRefError("Cannot delete refs/heads/main")
            if not tx.refs.delete(found.id, ref):
                raise RevisionNotFoundError(f"Invalid rev id: {ref} does not exist")
            version = tx.repos.next_ref_version(found.id)
            tx.changes.append(self._node.node_id, found, RefDelete(found.incarnation, ref, version))

    def preupload(
        self,
        principal: Principal,
        repo: RepoId,
        revision: str,
        files: list[PreuploadFile],
        gitignore: str | None,
        create_pr: bool = False,
    ) -> list[PreuploadAnswer]:
        with self._db.read() as tx:
            found, _ = self._committable(tx, principal, repo, revision, create_pr)
            head = resolve_commit(tx, found, revision)
            tree = {f.path: f.entry for f in tx.commits.tree(head.id)}
        lfs = lfs_spec(self._text(tree.get(".gitattributes")))
        ignored = ignore_spec(
            gitignore if gitignore is not None else self._text(tree.get(".gitignore"))
        )
        answers = []
        for f in files:
            is_lfs = f.size > REGULAR_FILE_MAX or lfs.match_file(f.path)
            current = tree.get(f.path)
            oid = None if current is None else (current.sha256 if is_lfs else current.git_sha1)
            answers.append(PreuploadAnswer(f.path, is_lfs, ignored.match_file(f.path), oid))
        return answers

    def adding(
        self, principal: Principal, repo: RepoId, revision: str, stored: list[tuple[str, Hashes]]
    ) -> list[Operation]:
        """Operations adding blobs already stored, as the Hub client would send them: LFS
        where the repo's .gitattributes or the size says so, regular files otherwise."""
        files = [PreuploadFile(path, hashes.size) for path, hashes in stored]
        answers = self.preupload(principal, repo, revision, files, None)
        return [
            AddLfs(path, hashes.sha256, hashes.size)
            if answer.lfs
            else AddBytes(path, b"".join(self._blobs.open(hashes.blake3)))
            for (path, hashes), answer in zip(stored, answers, strict=True)
        ]

    def _text(self, entry: TreeEntry | None) -> str:
        if entry is None or entry.size > REGULAR_FILE_MAX:
            return ""
        return b"".join(self._blobs.open(entry.blake3)).decode("utf-8", "replace")


def _apply(
    tree: dict[str, TreeEntry], operations: list[Operation], added: dict[str, TreeEntry]
) -> set[str]:
    """Apply operations in order to `tree` (in place); return the paths written."""
    changed: set[str] = set()
    for op in operations:
        if isinstance(op, Delete):
            _delete(tree, op)
        else:
            tree[op.path] = added[op.path]
            changed.add(op.path)
    dirs = {d for p in tree for d in parent_dirs(p)}
    clash = sorted(dirs & tree.keys())
    if clash:
        raise InvalidPathError(
            f"Path {clash[0]!r} would be both a file and a folder", detail={"path": clash[0]}
        )
    return changed


def _delete(tree: dict[str, TreeEntry], op: Delete) -> None:
    path = op.path.rstrip("/")
    if not op.folder and tree.pop(path, None) is not None:
        return
    # A folder named without its trailing slash is deleted as a folder, as on the Hub (the
    # client's CommitOperationDelete sends `deletedFile` for any path not ending in "/").
    doomed = [p for p in tree if p.startswith(path + "/")]
    if not doomed:
        kind = "folder" if op.folder else "file"
        raise EntryNotFoundError(
            f"A {kind} with this name doesn't exist: {path}", detail={"path": path}
        )
    for p in doomed:
        del tree[p]
