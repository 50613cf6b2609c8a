"""Repos: create (with the Hub's initial commit), move (rename or transfer), delete, look up
with visibility (an old id of a moved repo answers RepoMoved), list; and the write path every
change to a repo's history takes (`write_commit`, `move_ref`)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from registry.domain.access import Principal, may_read, require_write
from registry.domain.changes import (
    CommitAdd,
    RefSet,
    RepoDelete,
    RepoMove,
    RepoUpsert,
    XetFileAdd,
)
from registry.domain.clock import now_ms
from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import Digest, hash_bytes
from registry.domain.errors import (
    HomeMismatchError,
    MissingObjectError,
    RepoExistsError,
    RepoMovedError,
    RepoNotFoundError,
)
from registry.domain.names import RepoId, RepoType
from registry.domain.patterns import DEFAULT_GITATTRIBUTES, covers
from registry.domain.records import CommitRecord, RepoRecord, TreeFile
from registry.domain.xet.types import XorbRef
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.storage import BlobStore, Expected, put

logger = logging.getLogger(__name__)


def can_read(principal: Principal, repo: RepoRecord) -> bool:
    return may_read(principal, private=repo.private, namespace=repo.repo.namespace)


def find_repo(tx: Tx, principal: Principal, repo: RepoId) -> RepoRecord:
    """The repo if it exists and the principal may see it; RepoMoved if it is the old id of
    a repo the principal may see; else RepoNotFound."""
    found = tx.repos.find(repo)
    if found is None:
        moved = tx.repos.redirect(repo)
        if moved is not None and can_read(principal, moved):
            raise RepoMovedError(
                f"Repository {repo.full_name} moved to {moved.repo.full_name}",
                detail={"from": repo.full_name, "to": moved.repo.full_name},
            )
    if found is None or not can_read(principal, found):
        raise RepoNotFoundError()
    return found


def writable_repo(tx: Tx, principal: Principal, repo: RepoId, node: NodeIdentity) -> RepoRecord:
    """The repo, if the principal may write to it and this node is its home."""
    found = find_repo(tx, principal, repo)  # who asks comes first: 404, then 401/403
    require_write(principal, found.repo.namespace)  # as stored: ids match whatever their case
    require_home(tx, found, node)
    return found


def require_home(tx: Tx, repo: RepoRecord, node: NodeIdentity) -> None:
    """Only a repo's home node accepts writes; a replica names the home in its refusal."""
    if repo.home_node == node.node_id:
        return
    url = tx.peers.url_of_node(repo.home_node)
    where = f" at {url}" if url else ""
    raise HomeMismatchError(
        f"This node holds a replica of the repo; its home is node {repo.home_node}{where}: "
        "send writes there",
        detail={"home": repo.home_node, "home_url": url},
    )


def require_recorded(tx: Tx, entries: list[TreeEntry]) -> None:
    """Refuse a commit of files whose blob records are gone (gc took them after the upload).

    Called in the commit's write transaction: gc deletes blobs in write transactions too,
    which are serialized, so gc either saw this commit's tree rows or runs entirely before.
    """
    recorded = tx.blobs.recorded(e.blake3 for e in entries)
    gone = sorted(e.path for e in entries if e.blake3 not in recorded)
    if gone:
        raise MissingObjectError(
            f"The content of {gone[0]!r} is no longer stored on this node (garbage collection "
            "removed it after it was uploaded): upload it again and retry the commit",
            detail={"paths": gone},
        )


@dataclass(frozen=True)
class NewCommit:
    """A commit to write: its full tree, and which of its paths it changed."""

    parent: str | None
    author: str
    title: str
    message: str
    tree: list[TreeEntry]
    changed: set[str]
    last_commits: dict[str, str]  # path -> commit that last changed it, for unchanged paths


def write_commit(tx: Tx, node: NodeIdentity, repo: RepoRecord, new: NewCommit, ref: str) -> str:
    """Insert a commit with its full tree, move `ref` to it, and log both changes."""
    require_recorded(tx, [e for e in new.tree if e.path in new.changed])
    created = now_ms()
    sha = commit_id(
        repo_key=repo.key,
        incarnation=repo.incarnation,
        parent=new.parent,
        author=new.author,
        title=new.title,
        message=new.message,
        created_ms=created,
        tree=new.tree,
    )
    files = [
        TreeFile(e, sha if e.path in new.changed else new.last_commits.get(e.path, sha))
        for e in new.tree
    ]
    record = CommitRecord(sha, repo.id, new.parent, new.author, new.title, new.message, created)
    tx.commits.add(record, files)
    changed = [e.blake3 for e in new.tree if e.lfs and e.path in new.changed]
    for xet_file in xet_files(tx, repo, changed):
        tx.changes.append(node.node_id, repo, xet_file)
    change = CommitAdd(
        repo.incarnation,
        sha,
        new.parent,
        new.author,
        new.title,
        new.message,
        created,
        tuple(new.tree),
    )
    tx.changes.append(node.node_id, repo, change)
    move_ref(tx, node, repo, ref, sha)
    tx.repos.touch(repo.id, created)
    return sha


def xet_files(tx: Tx, repo: RepoRecord, digests: list[Digest]) -> list[XetFileAdd]:
    """The recipes of the files among these blobs that were uploaded through Xet."""
    changes = []
    for file in tx.xet.files_of(digests).values():
        xorbs = tx.xet.xorbs(file.xorbs)
        order = dict.fromkeys(t.xorb for t in file.terms)  # as the terms name them
        refs = tuple(XorbRef(h, xorbs[h].blake3, xorbs[h].size) for h in order if h in xorbs)
        terms = file.terms
        changes.append(
            XetFileAdd(
                repo.incarnation, file.hash, file.blake3, file.sha256, file.size, terms, refs
            )
        )
    return changes


def move_ref(tx: Tx, node: NodeIdentity, repo: RepoRecord, ref: str, sha: str) -> None:
    """Point `ref` at commit `sha` with the repo's next ref version, and log the move."""
    version = tx.repos.next_ref_version(repo.id)
    tx.refs.set(repo.id, ref, sha, version)
    tx.changes.append(node.node_id, repo, RefSet(repo.incarnation, ref, sha, version))


class RepoService:
    def __init__(self, db: Database, blobs: BlobStore, node: NodeIdentity) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node

    def store_bytes(self, data: bytes) -> TreeEntry:
        """Ingest small in-memory content (regular files) and record its blob."""
        hashes = hash_bytes(data)
        # Bytes stored already are reused only once marked wanted (gc then keeps them), and
        # only if their record says they are stored: a size cached by the store may be stale.
        with self._db.write(invalidates=False) as tx:  # no reader caches these times
            reused = tx.blobs.want([hashes.blake3]) > 0
        if not reused or self._blobs.stat(hashes.blake3) is None:
            put(self._blobs, Expected(blake3=hashes.blake3, size=len(data)), [data])
        with self._db.write() as tx:
            tx.blobs.record(hashes.blake3, hashes.sha256, hashes.size, hashes.git_sha1)
        return TreeEntry("", hashes.blake3, hashes.sha256, hashes.size, False, hashes.git_sha1)

    def create(self, principal: Principal, repo: RepoId, *, private: bool) -> RepoRecord:
        require_write(principal, repo.namespace)
        attributes = self.store_bytes(DEFAULT_GITATTRIBUTES.encode())
        entry = TreeEntry(
            ".gitattributes",
            attributes.blake3,
            attributes.sha256,
            attributes.size,
            False,
            attributes.git_sha1,
        )
        initial = NewCommit(
            None, principal.user or "", "initial commit", "", [entry], {entry.path}, {}
        )
        with self._db.write() as tx:
            if tx.repos.find(repo) is not None:
                raise RepoExistsError(
                    f"You already created this {repo.type.value} repo",
                    detail={"repo": repo.full_name},
                )
            created = tx.repos.create(
                repo,
                private=private,
                home=self._node.node_id,
                incarnation=uuid.uuid4().hex,
                created_ms=now_ms(),
            )
            upsert = RepoUpsert(created.incarnation, private, created.home_node, created.created_ms)
            tx.changes.append(self._node.node_id, created, upsert)
            write_commit(tx, self._node, created, initial, "refs/heads/main")
        logger.info("repo created repo=%s private=%s", repo, private)
        return created

    def move(self, principal: Principal, source: RepoId, target: RepoId) -> RepoRecord:
        """Rename or transfer a repo (with its commits, refs and search entry: they follow its
        row); its old id redirects to it. The principal must be able to write both namespaces.

        Raises:
            RepoNotFoundError (no source to see), UnauthorizedError or ForbiddenError,
            HomeMismatchError (a replica), RepoExistsError (the target id is taken).
        """
        with self._db.write() as tx:
            found = tx.repos.find(source)
            if found is None or not can_read(principal, found):
                raise RepoNotFoundError()
            require_write(principal, found.repo.namespace)
            require_write(principal, target.namespace)
            require_home(tx, found, self._node)
            taken = tx.repos.find(target)
            if (taken is not None and taken.id != found.id) or target.key == found.key:
                raise RepoExistsError(
                    f"A {target.type.value} repository called {target.full_name} already exists",
                    detail={"repo": target.full_name},
                )
            moved = tx.repos.move(found.id, target)
            tx.changes.append(self._node.node_id, found, RepoMove(found.incarnation, target.key))
            tx.repos.touch(found.id, now_ms())
            mirrors = [m.name for m in tx.mirrors.all() if covers(m.repos, found.key)]
        logger.info("repo moved repo=%s to=%s", found.repo, target)
        if mirrors and not found.private:
            # Mirrors do not carry moves (README, "Renaming and transferring repos").
            logger.warning(
                "repo moved repo=%s to=%s: mirrors=%s keep it under its old name; its later "
                "changes are pushed under the new one",
                found.repo,
                target,
                ",".join(mirrors),
            )
        return moved

    def delete(self, principal: Principal, repo: RepoId) -> None:
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            tx.repos.delete(found.id)
            tx.changes.append(self._node.node_id, found, RepoDelete(found.incarnation))
        logger.info("repo deleted repo=%s", repo)

    def get(self, principal: Principal, repo: RepoId) -> RepoRecord:
        with self._db.read() as tx:
            return find_repo(tx, principal, repo)

    def check_access(self, principal: Principal, repo: RepoId, *, write: bool) -> None:
        """Raise what reading (or, with `write`, writing to) the repo would be refused for.

        Raises:
            RepoNotFoundError (missing, or private to someone else), UnauthorizedError or
            ForbiddenError (with `write`: no token, a read-only one, another namespace).
        """
        found = self.get(principal, repo)
        if write:
            require_write(principal, found.repo.namespace)

    def visible(self, principal: Principal, repo_type: RepoType) -> list[RepoRecord]:
        """Every repo of a type the principal may see."""
        with self._db.read() as tx:
            return tx.repos.visible(repo_type, principal)
