"""Applies planned replication actions, with the peer's cursor, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import delete, tuple_
from sqlmodel import Session, col, select

from registry.domain.digest import Digest
from registry.domain.names import RepoId, RepoType
from registry.domain.replication import (
    Action,
    AddCommit,
    CreateRepo,
    DeleteRef,
    DeleteRepo,
    Entry,
    LocalView,
    Record,
    RepoState,
    SetRef,
)
from registry.metadata.db import Database, now_ms
from registry.metadata.tables import (
    Blob,
    Change,
    Commit,
    Peer,
    Ref,
    Repo,
    Tombstone,
    TreeRow,
)
from registry.service.identity import NodeIdentity
from registry.service.repos import insert_tree
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
Planner = Callable[[LocalView, list[Entry]], list[Action]]


def _repo_row(session: Session, key: str) -> Repo | None:
    kind, namespace, name = key.split("/")
    return session.exec(
        select(Repo).where(Repo.type == kind, Repo.namespace == namespace, Repo.name == name)
    ).first()


class ReplicationService:
    def __init__(self, db: Database, blobs: BlobStore, node: NodeIdentity) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node

    def apply(
        self, peer_id: str, entries: list[Entry], last_serial: int, head: int, planner: Planner
    ) -> list[tuple[Digest, int]]:
        """Plan and apply a batch, then move the peer's cursor, atomically.

        Returns the blobs (digest, size) the new commits reference that are not stored here.
        """
        missing: dict[Digest, int] = {}
        with self._db.write() as session:
            peer = session.get(Peer, peer_id)
            if peer is None:
                return []  # removed while pulling
            actions = planner(self._view(session, entries), entries)
            rows: dict[str, Repo | None] = {}  # repo rows of this batch, looked up once
            for action in actions:
                self._execute(session, action, missing, rows)
            peer.cursor, peer.head = last_serial, head
            if last_serial >= head:
                peer.behind_since_ms = None
            elif peer.behind_since_ms is None:
                peer.behind_since_ms = now_ms()
            session.add(peer)
        applied = sum(1 for a in actions if isinstance(a, Record))
        if applied:
            logger.info("applied peer=%s entries=%d cursor=%d", peer_id, applied, last_serial)
        return [(d, s) for d, s in missing.items() if self._blobs.stat(d) is None]

    def missing_blobs(self, limit: int = 1000) -> list[tuple[Digest, int]]:
        """Blobs some commit references that are not stored here: the durable to-do list of
        eager replication (derived from state, so a crash loses none of it)."""
        stored = select(Blob.blake3)
        with self._db.read() as session:
            rows = session.exec(
                select(TreeRow.blake3, TreeRow.size)
                .where(col(TreeRow.blake3).not_in(stored))
                .distinct()
                .limit(limit)
            ).all()
        return [(Digest(b3), size) for b3, size in rows]

    def _view(self, session: Session, entries: list[Entry]) -> LocalView:
        keys = {(e.origin, e.origin_serial) for e in entries}
        applied = set()
        if keys:
            rows = session.exec(
                select(Change.origin, Change.origin_serial).where(
                    tuple_(col(Change.origin), col(Change.origin_serial)).in_(list(keys))
                )
            ).all()
            applied = {(o, s) for o, s in rows}
        repos: dict[str, RepoState] = {}
        for key in {e.repo for e in entries}:
            row = _repo_row(session, key)
            if row is not None:
                refs = session.exec(select(Ref).where(Ref.repo_id == row.id)).all()
                repos[key] = RepoState(
                    row.incarnation, row.home_node, {r.name: r.version for r in refs}
                )
        wanted = {str(e.body.get(k)) for e in entries for k in ("id", "commit") if e.body.get(k)}
        commits = set(session.exec(select(Commit.id).where(col(Commit.id).in_(wanted))).all())
        tombstones = set(
            session.exec(
                select(Tombstone.repo, Tombstone.incarnation).where(
                    col(Tombstone.repo).in_({e.repo for e in entries})
                )
            ).all()
        )
        return LocalView(self._node.node_id, applied, repos, commits, tombstones)

    def _execute(
        self,
        session: Session,
        action: Action,
        missing: dict[Digest, int],
        rows: dict[str, Repo | None],
    ) -> None:
        if isinstance(action, CreateRepo | DeleteRepo):
            rows.pop(action.repo, None)
        elif not isinstance(action, Record) and action.repo not in rows:
            rows[action.repo] = _repo_row(session, action.repo)
        match action:
            case CreateRepo():
                kind, namespace, name = action.repo.split("/")
                RepoId.parse(RepoType(kind), namespace, name)  # refuse names we would refuse
                session.add(
                    Repo(
                        type=kind,
                        namespace=namespace,
                        name=name,
                        private=action.private,
                        home_node=action.home,
                        incarnation=action.incarnation,
                        created_ms=action.created_ms,
                        updated_ms=action.created_ms,
                    )
                )
                session.flush()
            case DeleteRepo():
                self._delete_repo(session, action)
            case AddCommit():
                self._add_commit(session, action, missing, rows[action.repo])
            case SetRef():
                self._set_ref(session, action, rows[action.repo])
            case DeleteRef():
                row = rows[action.repo]
                ref = session.get(Ref, (row.id, action.ref)) if row else None
                if ref is not None:
                    session.delete(ref)
            case Record():
                e = action.entry
                self._db.append_change(
                    session,
                    e.origin,
                    e.kind,
                    e.repo,
                    e.body,
                    private=e.private,
                    origin_serial=e.origin_serial,
                )

    def _delete_repo(self, session: Session, action: DeleteRepo) -> None:
        session.add(Tombstone(repo=action.repo, incarnation=action.incarnation))
        row = _repo_row(session, action.repo)
        if row is None or row.incarnation != action.incarnation:
            return
        commits = select(Commit.id).where(Commit.repo_id == row.id)
        session.execute(delete(TreeRow).where(col(TreeRow.commit_id).in_(commits)))
        session.execute(delete(Commit).where(col(Commit.repo_id) == row.id))
        session.execute(delete(Ref).where(col(Ref.repo_id) == row.id))
        session.delete(row)
        session.flush()

    def _add_commit(
        self, session: Session, action: AddCommit, missing: dict[Digest, int], row: Repo | None
    ) -> None:
        if row is None or row.id is None:
            return
        body = action.body
        sha, parent = str(body["id"]), body.get("parent")
        session.add(
            Commit(
                id=sha,
                repo_id=row.id,
                parent=parent,
                author=str(body["author"]),
                title=str(body["title"]),
                message=str(body.get("message", "")),
                created_ms=int(body["created_ms"]),
            )
        )
        before = (
            {}
            if not parent
            else {
                path: (b3, last)
                for path, b3, last in session.exec(
                    select(TreeRow.path, TreeRow.blake3, TreeRow.last_commit).where(
                        TreeRow.commit_id == parent
                    )
                ).all()
            }
        )
        rows = []
        for path, b3, sha256, size, lfs, git_sha1 in body["tree"]:
            old_b3, old_last = before.get(path, (None, sha))
            rows.append((path, b3, sha256, size, lfs, git_sha1, old_last if old_b3 == b3 else sha))
            missing[Digest(b3)] = int(size)
        insert_tree(session, sha, rows)
        row.updated_ms = max(row.updated_ms, int(body["created_ms"]))
        session.add(row)

    def _set_ref(self, session: Session, action: SetRef, row: Repo | None) -> None:
        if row is None or row.id is None:
            return
        ref = session.get(Ref, (row.id, action.ref))
        if ref is None:
            ref = Ref(
                repo_id=row.id, name=action.ref, commit_id=action.commit, version=action.version
            )
        ref.commit_id, ref.version = action.commit, action.version
        row.ref_version = max(row.ref_version, action.version)
        session.add(ref)
        session.add(row)
