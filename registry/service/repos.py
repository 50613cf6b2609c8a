"""Repos: create (with the Hub's initial commit), delete, look up with visibility, list."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import ColumnElement, delete, insert, or_, true, update
from sqlmodel import Session, col, select

from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import Digest, hash_bytes
from registry.domain.errors import (
    HomeMismatchError,
    MissingObjectError,
    RepoExistsError,
    RepoNotFoundError,
)
from registry.domain.names import RepoId, RepoType
from registry.domain.patterns import DEFAULT_GITATTRIBUTES
from registry.metadata.db import Database, now_ms
from registry.metadata.tables import Blob, Commit, Peer, Ref, Repo, TreeRow
from registry.service.auth import Principal, can_read, require_write
from registry.service.identity import NodeIdentity
from registry.storage import BlobStore, Expected, put

logger = logging.getLogger(__name__)


def repo_id_of(row: Repo) -> RepoId:
    return RepoId(RepoType(row.type), row.namespace, row.name)


def find_repo(session: Session, principal: Principal, repo: RepoId) -> Repo:
    """The repo row if it exists and the principal may see it; else RepoNotFound."""
    row = session.exec(
        select(Repo).where(
            Repo.type == repo.type.value, Repo.namespace == repo.namespace, Repo.name == repo.name
        )
    ).first()
    if row is None or not can_read(principal, row):
        raise RepoNotFoundError()
    return row


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The SQL condition for repos the principal may see (public, own, or all for the admin)."""
    if principal.is_admin:
        return true()
    return or_(col(Repo.private).is_(False), col(Repo.namespace) == principal.user)


class RepoService:
    def __init__(self, db: Database, blobs: BlobStore, node: NodeIdentity) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node

    def store_bytes(self, data: bytes) -> TreeEntry:
        """Ingest small in-memory content (regular files) and record its blob row."""
        hashes = hash_bytes(data)
        # Bytes stored already are reused only once marked wanted (gc then keeps them), and
        # only if their row says they are stored: a size cached by the store may be stale.
        reused = want_blobs(self._db, col(Blob.blake3) == hashes.blake3.hex) > 0
        if not reused or self._blobs.stat(hashes.blake3) is None:
            put(self._blobs, Expected(blake3=hashes.blake3, size=len(data)), [data])
        with self._db.write() as session:
            record_blob(session, hashes.blake3, hashes.sha256, hashes.size, hashes.git_sha1)
        return TreeEntry("", hashes.blake3, hashes.sha256, hashes.size, False, hashes.git_sha1)

    def create(self, principal: Principal, repo: RepoId, *, private: bool) -> Repo:
        require_write(principal, repo.namespace)
        attributes = self.store_bytes(DEFAULT_GITATTRIBUTES.encode())
        with self._db.write() as session:
            if (
                session.exec(
                    select(Repo).where(
                        Repo.type == repo.type.value,
                        Repo.namespace == repo.namespace,
                        Repo.name == repo.name,
                    )
                ).first()
                is not None
            ):
                raise RepoExistsError(
                    f"You already created this {repo.type.value} repo",
                    detail={"repo": repo.full_name},
                )
            created = now_ms()
            row = Repo(
                type=repo.type.value,
                namespace=repo.namespace,
                name=repo.name,
                private=private,
                home_node=self._node.node_id,
                incarnation=uuid.uuid4().hex,
                created_ms=created,
                updated_ms=created,
            )
            session.add(row)
            session.flush()
            log_change(self._db, session, self._node, row, "repo.upsert", repo_body(row))
            entry = TreeEntry(
                ".gitattributes",
                attributes.blake3,
                attributes.sha256,
                attributes.size,
                False,
                attributes.git_sha1,
            )
            write_commit(
                self._db,
                session,
                self._node,
                row,
                parent=None,
                author=principal.user or "",
                title="initial commit",
                message="",
                tree=[entry],
                changed={entry.path},
                ref="refs/heads/main",
            )
        logger.info("repo created repo=%s private=%s", repo, private)
        return row

    def delete(self, principal: Principal, repo: RepoId) -> None:
        with self._db.write() as session:
            row = find_repo(session, principal, repo)
            require_write(principal, repo.namespace)
            require_home(session, row, self._node)
            assert row.id is not None
            commits = select(Commit.id).where(Commit.repo_id == row.id)
            session.execute(delete(TreeRow).where(col(TreeRow.commit_id).in_(commits)))
            session.execute(delete(Commit).where(col(Commit.repo_id) == row.id))
            session.execute(delete(Ref).where(col(Ref.repo_id) == row.id))
            session.delete(row)
            log_change(self._db, session, self._node, row, "repo.delete", {})
        logger.info("repo deleted repo=%s", repo)

    def get(self, principal: Principal, repo: RepoId) -> Repo:
        with self._db.read() as session:
            return find_repo(session, principal, repo)

    def visible(self, principal: Principal, repo_type: RepoType) -> list[Repo]:
        """Every repo of a type the principal may see."""
        stmt = select(Repo).where(Repo.type == repo_type.value, visible_to(principal))
        with self._db.read() as session:
            return list(session.exec(stmt).all())


def require_home(session: Session, repo: Repo, node: NodeIdentity) -> None:
    """Only a repo's home node accepts writes; a replica names the home in its refusal."""
    if repo.home_node == node.node_id:
        return
    peer = session.exec(select(Peer).where(Peer.node_id == repo.home_node)).first()
    where = f" at {peer.url}" if peer else ""
    raise HomeMismatchError(
        f"This node holds a replica of the repo; its home is node {repo.home_node}{where}: "
        "send writes there",
        detail={"home": repo.home_node, "home_url": peer.url if peer else None},
    )


def repo_body(row: Repo) -> dict[str, object]:
    return {
        "private": row.private,
        "home": row.home_node,
        "incarnation": row.incarnation,
        "created_ms": row.created_ms,
    }


def record_blob(
    session: Session, digest: Digest, sha256: str, size: int, git_sha1: str | None
) -> None:
    """Record a blob just stored (or stored again): it is wanted now (see `want_blobs`)."""
    now = now_ms()
    row = session.get(Blob, digest.hex)
    if row is None:
        row = Blob(
            blake3=digest.hex,
            sha256=sha256,
            size=size,
            git_sha1=git_sha1,
            created_ms=now,
            wanted_ms=now,
        )
    row.wanted_ms = now
    if row.git_sha1 is None and git_sha1 is not None:
        row.git_sha1 = git_sha1
    session.add(row)


def want_blobs(db: Database, which: ColumnElement[bool]) -> int:
    """Mark stored blobs wanted now, before an upload relies on bytes already stored: gc
    keeps an unreferenced blob for its grace period after this. Returns how many rows matched
    (none: not stored, or gc took it just before; store the bytes again)."""
    with db.write(invalidates=False) as session:  # no reader caches these times
        result = session.connection().execute(update(Blob).where(which).values(wanted_ms=now_ms()))
    return result.rowcount


def require_recorded(session: Session, entries: list[TreeEntry]) -> None:
    """Refuse a commit of files whose blob rows are gone (gc took them after the upload).

    Called in the commit's write transaction: gc deletes blobs in write transactions too,
    which are serialized, so gc either saw this commit's tree rows or runs entirely before.
    """
    wanted = {e.blake3.hex: e.path for e in entries}
    recorded = set(session.exec(select(Blob.blake3).where(col(Blob.blake3).in_(wanted))).all())
    gone = sorted(path for b3, path in wanted.items() if b3 not in recorded)
    if gone:
        raise MissingObjectError(
            f"The content of {gone[0]!r} is no longer stored on this node (garbage collection "
            "removed it after it was uploaded): upload it again and retry the commit",
            detail={"paths": gone},
        )


def write_commit(
    db: Database,
    session: Session,
    node: NodeIdentity,
    repo: Repo,
    *,
    parent: str | None,
    author: str,
    title: str,
    message: str,
    tree: list[TreeEntry],
    changed: set[str],
    ref: str,
    last_commits: dict[str, str] | None = None,
) -> str:
    """Insert a commit with its full tree, move `ref` to it, and log both changes."""
    require_recorded(session, [e for e in tree if e.path in changed])
    created = now_ms()
    rid = repo_id_of(repo)
    sha = commit_id(
        repo_key=rid.key,
        incarnation=repo.incarnation,
        parent=parent,
        author=author,
        title=title,
        message=message,
        created_ms=created,
        tree=tree,
    )
    assert repo.id is not None
    session.add(
        Commit(
            id=sha,
            repo_id=repo.id,
            parent=parent,
            author=author,
            title=title,
            message=message,
            created_ms=created,
        )
    )
    previous = last_commits or {}
    insert_tree(
        session,
        sha,
        [
            (
                e.path,
                e.blake3.hex,
                e.sha256,
                e.size,
                e.lfs,
                e.git_sha1,
                sha if e.path in changed else previous.get(e.path, sha),
            )
            for e in tree
        ],
    )
    log_change(
        db,
        session,
        node,
        repo,
        "commit.add",
        {
            "id": sha,
            "parent": parent,
            "author": author,
            "title": title,
            "message": message,
            "created_ms": created,
            "tree": [[e.path, e.blake3.hex, e.sha256, e.size, e.lfs, e.git_sha1] for e in tree],
        },
    )
    set_ref(db, session, node, repo, ref, sha)
    repo.updated_ms = created
    session.add(repo)
    return sha


TreeValues = tuple[str, str, str, int, bool, str | None, str]


def insert_tree(session: Session, commit_id: str, rows: list[TreeValues]) -> None:
    """Insert a commit's tree in one statement (ORM objects cost ~10x more per row).

    Each row: (path, blake3 hex, sha256, size, lfs, git_sha1, last_commit).
    """
    if rows:
        keys = ("path", "blake3", "sha256", "size", "lfs", "git_sha1", "last_commit")
        session.execute(
            insert(TreeRow),
            [{"commit_id": commit_id, **dict(zip(keys, r, strict=True))} for r in rows],
        )


def set_ref(
    db: Database, session: Session, node: NodeIdentity, repo: Repo, ref: str, sha: str
) -> None:
    repo.ref_version += 1
    session.add(repo)
    assert repo.id is not None
    row = session.get(Ref, (repo.id, ref))
    if row is None:
        row = Ref(repo_id=repo.id, name=ref, commit_id=sha, version=repo.ref_version)
    row.commit_id, row.version = sha, repo.ref_version
    session.add(row)
    log_change(
        db, session, node, repo, "ref.set", {"ref": ref, "commit": sha, "version": repo.ref_version}
    )


def log_change(
    db: Database,
    session: Session,
    node: NodeIdentity,
    repo: Repo,
    kind: str,
    body: dict[str, object],
) -> int:
    """Log a change of `repo` made on this node; every entry names the repo's incarnation."""
    full = {**body, "incarnation": repo.incarnation}
    return db.append_change(
        session, node.node_id, kind, repo_id_of(repo).key, full, private=repo.private
    )
