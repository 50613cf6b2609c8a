"""Applies planned replication actions, with the peer's cursor, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from registry.domain.changes import ChangeEntry, XetFileAdd
from registry.domain.digest import Digest
from registry.domain.names import RepoId, RepoType
from registry.domain.records import CommitRecord, RepoRecord, TreeFile, XetFileRecord
from registry.domain.replication import (
    Action,
    AddCommit,
    AddXetFile,
    CreateRepo,
    DeleteRef,
    DeleteRepo,
    LocalView,
    Record,
    RepoState,
    SetRef,
)
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
Planner = Callable[[LocalView, list[ChangeEntry]], list[Action]]


class ReplicationService:
    def __init__(self, db: Database, blobs: BlobStore, node: NodeIdentity) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node

    def apply(
        self,
        peer_id: str,
        entries: list[ChangeEntry],
        last_serial: int,
        head: int,
        planner: Planner,
    ) -> list[tuple[Digest, int]]:
        """Plan and apply a batch, then move the peer's cursor, atomically.

        Returns the blobs (digest, size) the new commits reference that are not stored here.
        """
        missing: dict[Digest, int] = {}
        with self._db.write() as tx:
            if not tx.peers.exists(peer_id):
                return []  # removed while pulling
            actions = planner(self._view(tx, entries), entries)
            repos: dict[str, RepoRecord | None] = {}  # repos of this batch, looked up once
            for action in actions:
                self._execute(tx, action, missing, repos)
            tx.peers.advance(peer_id, last_serial, head)
        applied = sum(1 for a in actions if isinstance(a, Record))
        if applied:
            logger.info("applied peer=%s entries=%d cursor=%d", peer_id, applied, last_serial)
        return [(d, s) for d, s in missing.items() if self._blobs.stat(d) is None]

    def missing_blobs(self, limit: int = 1000) -> list[tuple[Digest, int]]:
        """Blobs some commit references that are not stored here: the durable to-do list of
        eager replication (derived from state, so a crash loses none of it). For a file
        uploaded through Xet, the xorbs it lacks instead."""
        with self._db.read() as tx:
            return list(needed(tx, tx.blobs.missing(limit)).items())

    def _view(self, tx: Tx, entries: list[ChangeEntry]) -> LocalView:
        applied = tx.changes.applied((e.origin, e.origin_serial) for e in entries)
        states: dict[str, RepoState] = {}
        for key in {e.repo for e in entries}:
            repo = tx.repos.by_key(key)
            if repo is not None:
                refs = {r.name: r.version for r in tx.refs.of_repo(repo.id)}
                states[key] = RepoState(repo.incarnation, repo.home_node, refs)
        wanted = {str(e.body.get(k)) for e in entries for k in ("id", "commit") if e.body.get(k)}
        commits = tx.commits.existing(wanted)
        tombstones = tx.repos.tombstones(e.repo for e in entries)
        return LocalView(self._node.node_id, applied, states, commits, tombstones)

    def _execute(
        self,
        tx: Tx,
        action: Action,
        missing: dict[Digest, int],
        repos: dict[str, RepoRecord | None],
    ) -> None:
        if isinstance(action, CreateRepo | DeleteRepo):
            repos.pop(action.repo, None)
        elif not isinstance(action, Record) and action.repo not in repos:
            repos[action.repo] = tx.repos.by_key(action.repo)
        match action:
            case CreateRepo():
                kind, namespace, name = action.repo.split("/")
                repo = RepoId.parse(RepoType(kind), namespace, name)  # names we would refuse
                tx.repos.create(
                    repo,
                    private=action.private,
                    home=action.home,
                    incarnation=action.incarnation,
                    created_ms=action.created_ms,
                )
            case DeleteRepo():
                tx.repos.tombstone(action.repo, action.incarnation)
                found = tx.repos.by_key(action.repo)
                if found is not None and found.incarnation == action.incarnation:
                    tx.repos.delete(found.id)
            case AddCommit():
                self._add_commit(tx, action, missing, repos[action.repo])
            case AddXetFile():
                if repos[action.repo] is not None:
                    add_xet_file(tx, action.file)
            case SetRef():
                found = repos[action.repo]
                if found is not None:
                    tx.refs.set(found.id, action.ref, action.commit, action.version)
                    tx.repos.saw_ref_version(found.id, action.version)
            case DeleteRef():
                found = repos[action.repo]
                if found is not None:
                    tx.refs.delete(found.id, action.ref)
            case Record():
                tx.changes.record(action.entry)

    def _add_commit(
        self, tx: Tx, action: AddCommit, missing: dict[Digest, int], repo: RepoRecord | None
    ) -> None:
        if repo is None:
            return
        c = action.commit
        carried = tx.commits.last_commits(c.parent, c.tree) if c.parent else {}
        files = []
        for entry in c.tree:
            files.append(TreeFile(entry, carried.get(entry.path, c.id)))
        missing.update(needed(tx, [(e.blake3, e.size) for e in c.tree]))
        record = CommitRecord(c.id, repo.id, c.parent, c.author, c.title, c.message, c.created_ms)
        tx.commits.add(record, files)
        tx.repos.touch(repo.id, c.created_ms)


def add_xet_file(tx: Tx, change: XetFileAdd) -> None:
    """Keep a replicated file's recipe; a file whose xorbs are all here already (a new
    version sharing every chunk with an old one) is a blob here at once."""
    record = XetFileRecord(change.file, change.blake3, change.sha256, change.size, change.terms)
    tx.xet.add_file(record, change.xorbs)
    if not tx.xet.missing_xorbs(change.file):
        tx.blobs.record(change.blake3, change.sha256, change.size, None)


def needed(tx: Tx, blobs: list[tuple[Digest, int]]) -> dict[Digest, int]:
    """What to fetch for these blobs: each one itself, or for a file with a Xet recipe here
    the xorbs of it this node lacks (so a new version moves only its new chunks)."""
    files = tx.xet.files_of(d for d, _ in blobs)
    wanted: dict[Digest, int] = {}
    for digest, size in blobs:
        file = files.get(digest)
        if file is None:
            wanted[digest] = size
            continue
        wanted.update((x.blake3, x.size) for x in tx.xet.missing_xorbs(file.hash))
    return wanted
