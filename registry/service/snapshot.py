"""Snapshots of the replicable state: served to a joining peer, and loaded by one.

Theory of operation. Serving: the snapshot at serial N (the head when asked) is the change log
up to N, compacted (registry.domain.snapshot says what is dropped) and filtered by what the
reader may see, exactly as the feed filters. Entries up to N never change (the log only
appends; an abandoned entry is left out as the feed leaves it out), so the two passes the
compaction needs read pages of the log in short transactions and still describe one serial.

Loading: the joining node stages the verified entries outside the database (sync.bootstrap),
then applies them here in ONE write transaction, in chunks planned by the ordinary replication
planner, together with the peer's cursor = N and its chain at N. Into a node that holds
nothing yet, a chunk of common actions only (repos made, commits, ref moves, log entries) is
written as plain rows, many a statement (`_BulkLoad`); any other chunk, and every chunk into a
node that holds something, goes through the replay apply. Both end in the same state. So:
- nothing of a half-read snapshot is ever visible: a crash before the commit leaves the node
  as it was, and the bootstrap starts again;
- each applied entry is recorded in this node's own log with its origin, origin serial and
  chain, as replay would record it, so this node's own downstream peers (A -> B -> C) follow
  it, and (origin, origin serial) identifies each entry for idempotence when the feed, or
  another peer, brings it again;
- the feed from N on is checked as any page is: the chain at N makes a diverged history
  visible, and home versions order ref moves;
- an entry the compaction left out that reaches this node later by another path (a third
  peer) is planned like any entry: a superseded ref move is older than the version held and
  changes nothing, an entry of a deleted incarnation meets its tombstone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import blake3

from registry.domain.access import Principal
from registry.domain.changes import ChangeEntry
from registry.domain.names import RepoId, RepoType
from registry.domain.records import CommitRecord, TreeFile
from registry.domain.replication import (
    AddCommit,
    CreateRepo,
    DeleteRef,
    LocalView,
    Record,
    SetRef,
)
from registry.domain.snapshot import (
    Compaction,
    LineDigest,
    SnapshotHeader,
    entry_line,
    trailer_line,
)
from registry.metadata.commits import carried
from registry.metadata.db import Database
from registry.metadata.snapshot import NewRepo
from registry.metadata.tx import Tx
from registry.service.feed import may_read_entry
from registry.service.identity import NodeIdentity
from registry.service.peers import BOOTSTRAP
from registry.service.replication import Planner, ReplicationService

logger = logging.getLogger(__name__)
PAGE = 2000  # entries read per transaction while serving
BLOCK = 256 * 1024  # bytes of NDJSON sent at a time


@dataclass(frozen=True)
class StateDigest:
    digest: str
    repos: int


class SnapshotService:
    def __init__(self, db: Database, node: NodeIdentity, replication: ReplicationService) -> None:
        self._db = db
        self._node = node
        self._replication = replication

    def header(self) -> SnapshotHeader:
        """Where a snapshot taken now stands: this node's head serial and its chain there."""
        with self._db.read() as tx:
            head = tx.changes.head()
            at = tx.changes.at(head) if head else None
        chain = at.chain if at is not None else None
        return SnapshotHeader(self._node.node_id, self._node.epoch, head, chain)

    def stream(self, principal: Principal, header: SnapshotHeader) -> Iterator[bytes]:
        """The snapshot as NDJSON (header, entries, trailer with count and digest), in blocks
        of about `BLOCK` bytes: a streamed response moves each block through a thread."""
        digest = LineDigest()
        yield digest.add(header.line())  # at once: the reader knows the answer has begun
        compaction = Compaction()
        for entry in self._entries(header.serial, Compaction.NOTED):
            compaction.note(entry)
        block: list[bytes] = []
        size = 0
        for entry in self._entries(header.serial):
            if compaction.keeps(entry) and may_read_entry(principal, entry):
                line = digest.add(entry_line(entry))
                block.append(line)
                size += len(line)
            if size >= BLOCK:
                yield b"".join(block)
                block, size = [], 0
        block.append(trailer_line(digest.lines - 1, digest.text()))
        yield b"".join(block)

    def _entries(self, upto: int, kinds: tuple[str, ...] | None = None) -> Iterator[ChangeEntry]:
        after = 0
        while after < upto:
            with self._db.read() as tx:
                page = tx.snapshot.entries(after, upto, PAGE, kinds)
            if not page:
                return
            yield from page
            after = page[-1].serial

    def load(
        self,
        peer_id: str,
        header: SnapshotHeader,
        chunks: Iterable[list[ChangeEntry]],
        planner: Planner,
    ) -> int:
        """Apply a verified snapshot of peer `peer_id` and set its cursor to the snapshot's
        serial, in one transaction; returns how many entries this node logged. Nothing happens
        if the peer is gone or was read from meanwhile (its cursor moved)."""
        with self._db.write() as tx:
            peer = tx.peers.get(peer_id)
            if peer is None or peer.cursor != 0:
                return 0
            before = tx.changes.head()
            bulk = _BulkLoad(self._node.node_id) if tx.snapshot.empty() else None
            as_rows = replayed = 0
            for chunk in chunks:
                if bulk is not None and bulk.apply(tx, chunk, planner):
                    as_rows += 1
                else:
                    self._replication.apply_in(tx, chunk, planner)
                    replayed += 1
            tx.peers.advance(peer_id, header.serial, header.chain, header.serial)
            tx.values.delete(BOOTSTRAP + peer.url)
            logged = tx.changes.head() - before
        logger.info(
            "snapshot applied peer=%s serial=%d logged=%d rows_chunks=%d replayed_chunks=%d",
            peer_id,
            header.serial,
            logged,
            as_rows,
            replayed,
        )
        return logged

    def chosen(self, url: str) -> str | None:
        with self._db.read() as tx:
            return tx.values.get(BOOTSTRAP + url)

    def forget(self, url: str) -> None:
        with self._db.write(invalidates=False) as tx:
            tx.values.delete(BOOTSTRAP + url)

    def state_digest(self, principal: Principal) -> StateDigest:
        """A digest of the replicable state the reader may see (repos with home, incarnation
        and settings, refs with home versions, commits): two nodes that agree have the same."""
        hasher = blake3.blake3()
        count = 0
        with self._db.read() as tx:
            for repo in tx.snapshot.state(principal):
                hasher.update(repr(repo).encode() + b"\n")
                count += 1
        return StateDigest(f"blake3:{hasher.hexdigest()}", count)


_BULK = (CreateRepo, AddCommit, SetRef, DeleteRef, Record)  # what `_BulkLoad` writes itself


class _BulkLoad:
    """A snapshot loaded into an empty node, chunk by chunk, by the same planner as replay
    but with its common actions (repos made, commits added, refs moved, entries logged)
    written as plain rows, many a statement.

    The planner's view is kept across the chunks rather than read back from the database:
    the node held nothing before, so the view holds exactly what the chunks wrote (the
    compaction leaves at most one move of each ref, so a ref deleted and set again, which a
    view read back would see otherwise, does not occur). A chunk
    that plans any other action (a move, settings, a discussion, a Xet file, a rewrite, a
    collision) is handed back (`apply` returns False) for `ReplicationService.apply_in`,
    which plans it again from the database, to the same actions, and executes them."""

    def __init__(self, node_id: str) -> None:
        self._view = LocalView(node_id, {}, {}, set(), set())
        self._ids: dict[str, int] = {}  # repo key -> row id, of the repos made so far

    def apply(self, tx: Tx, chunk: list[ChangeEntry], planner: Planner) -> bool:
        actions = planner(self._view, chunk)
        if not all(isinstance(a, _BULK) for a in actions):
            self._ids.clear()  # the chunk may make, move or delete repos: read them again
            return False
        made = [
            NewRepo(_repo_id(a.repo), a.private, a.home, a.incarnation, a.created_ms)
            for a in actions
            if isinstance(a, CreateRepo)
        ]
        self._ids.update(tx.snapshot.add_repos(made))
        held = {a.repo for a in actions if isinstance(a, AddCommit | SetRef | DeleteRef)}
        found = tx.repos.by_keys(held - self._ids.keys())
        self._ids.update({key: repo.id for key, repo in found.items()})
        marks: dict[int, tuple[int, int]] = {}
        commits = self._commits(tx, [a for a in actions if isinstance(a, AddCommit)], marks)
        tx.commits.add_many(commits)
        refs: dict[tuple[int, str], tuple[str, int] | None] = {}
        for action in actions:
            if isinstance(action, SetRef):
                rid = self._ids[action.repo]
                refs[(rid, action.ref)] = (action.commit, action.version)
                updated, version = marks.get(rid, (0, 0))
                marks[rid] = (updated, max(version, action.version))
            elif isinstance(action, DeleteRef):
                refs[(self._ids[action.repo], action.ref)] = None
        tx.snapshot.put_refs(refs)
        tx.snapshot.raise_repo_marks(marks)
        tx.changes.record_many([(a.entry, a.mirrored) for a in actions if isinstance(a, Record)])
        return True

    def _commits(
        self, tx: Tx, adding: list[AddCommit], marks: dict[int, tuple[int, int]]
    ) -> list[tuple[CommitRecord, list[TreeFile]]]:
        """The rows of the chunk's commits, each file's last commit carried from its parent
        (read once for parents of earlier chunks); notes each repo's newest commit time."""
        ids = {a.commit.id for a in adding}
        parents = {a.commit.parent for a in adding if a.commit.parent}
        trees = tx.commits.paths_of(parents - ids)
        rows = []
        for action in adding:
            c, rid = action.commit, self._ids[action.repo]
            last = carried(trees.get(c.parent, {}) if c.parent else {}, c.tree)
            files = [TreeFile(e, last.get(e.path, c.id)) for e in c.tree]
            trees[c.id] = {f.entry.path: (f.entry.blake3.hex, f.last_commit) for f in files}
            rows.append(
                (
                    CommitRecord(c.id, rid, c.parent, c.author, c.title, c.message, c.created_ms),
                    files,
                )
            )
            updated, version = marks.get(rid, (0, 0))
            marks[rid] = (max(updated, c.created_ms), version)
        return rows


def _repo_id(key: str) -> RepoId:
    kind, namespace, name = key.split("/")
    return RepoId.parse(RepoType(kind), namespace, name)  # names we would refuse, as replay
