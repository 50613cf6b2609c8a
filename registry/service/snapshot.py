"""Snapshots of the replicable state: served to a joining peer, and loaded by one.

Theory of operation. Serving: the snapshot at serial N (the head when asked) is the change log
up to N, compacted (registry.domain.snapshot says what is dropped) and filtered by what the
reader may see, exactly as the feed filters. Entries up to N never change (the log only
appends; an abandoned entry is left out as the feed leaves it out), so the two passes the
compaction needs read pages of the log in short transactions and still describe one serial.

Loading: the joining node stages the verified entries outside the database (sync.bootstrap),
then applies them here in ONE write transaction, in chunks through the ordinary replication
planner, together with the peer's cursor = N and its chain at N. So:
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
from registry.domain.snapshot import (
    Compaction,
    LineDigest,
    SnapshotHeader,
    entry_line,
    trailer_line,
)
from registry.metadata.db import Database
from registry.service.feed import may_read_entry
from registry.service.identity import NodeIdentity
from registry.service.replication import Planner, ReplicationService

logger = logging.getLogger(__name__)
PAGE = 2000  # entries read per transaction while serving
BLOCK = 256 * 1024  # bytes of NDJSON sent at a time
BOOTSTRAP = "bootstrap:"  # node values: "bootstrap:<peer url>" -> snapshot | replay | auto


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
        for entry in self._entries(header.serial):
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

    def _entries(self, upto: int) -> Iterator[ChangeEntry]:
        after = 0
        while after < upto:
            with self._db.read() as tx:
                page = tx.snapshot.entries(after, upto, PAGE)
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
            for chunk in chunks:
                self._replication.apply_in(tx, chunk, planner)
            tx.peers.advance(peer_id, header.serial, header.chain, header.serial)
            tx.values.delete(BOOTSTRAP + peer.url)
            logged = tx.changes.head() - before
        logger.info("snapshot applied peer=%s serial=%d logged=%d", peer_id, header.serial, logged)
        return logged

    def choose(self, url: str, mode: str) -> None:
        """How the peer at `url` is to be joined (snapshot, replay, or auto: snapshot when it
        holds more entries than the threshold); said before the peer is added, so its puller
        never starts replaying first."""
        with self._db.write(invalidates=False) as tx:
            tx.values.put(BOOTSTRAP + url, mode)

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
