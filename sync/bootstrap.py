"""Joins a peer from its snapshot instead of replaying its whole log from serial 0.

Theory of operation: `modelyard peer add --bootstrap` (or `POST /v1/peers` with `bootstrap`)
notes how the peer is to be joined in the transaction that adds it (registry.service.peers).
The peer's puller asks `join` before each pull; while the peer is to be joined from a
snapshot and has never been read (cursor 0), it streams `GET /v1/sync/snapshot` into an
anonymous file under the data dir, hashing each line, and checks the trailer's count and
digest. Only a verified snapshot is applied, in one transaction with the peer's cursor (its
serial N); the puller then follows the feed from N.
A crash (even SIGKILL) before that commit leaves nothing: the file has no name, nothing was
written to the database, and the choice is still noted, so the next start joins again from a
fresh snapshot. Blobs follow as after any pull: eager peers' missing blobs are queued.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from registry.client import RegistryClient, RetryPolicy
from registry.domain.changes import ChangeEntry
from registry.domain.errors import InvalidError, PeerMismatchError, SnapshotMismatchError
from registry.domain.records import PeerRecord
from registry.domain.snapshot import LineDigest, SnapshotHeader, parse_header, parse_line
from registry.service.replication import ReplicationService
from registry.service.snapshot import SnapshotService
from registry.settings import SyncSettings
from sync.connect import PeerConnector
from sync.fetcher import BlobFetcher
from sync.planner import plan

logger = logging.getLogger(__name__)
CHUNK = 2000  # entries planned at a time inside the one transaction
TRAILER = b'{"digest":'  # how the trailer line begins (keys are sorted; no entry has this one)


class Bootstrapper:
    def __init__(
        self,
        snapshots: SnapshotService,
        connect: PeerConnector,
        replication: ReplicationService,
        fetcher: BlobFetcher,
        settings: SyncSettings,
        staging: Path,
    ) -> None:
        self._snapshots = snapshots
        self._connect = connect
        self._replication = replication
        self._fetcher = fetcher
        self._settings = settings
        self._staging = staging

    def join(self, peer_id: str) -> bool:
        """Join the peer from its snapshot if that is still to be done; True if this did the
        pull's work (the puller follows the feed next time)."""
        peer = self._connect.peers.get(peer_id)
        mode = self._snapshots.chosen(peer.url)
        if mode is None:
            return False
        if peer.cursor != 0 or mode == "replay":
            self._snapshots.forget(peer.url)
            return False
        with self._connect.client(peer, RetryPolicy(attempts=1)) as client:
            head = client.health().serial
            if mode == "auto" and head <= self._settings.snapshot_threshold:
                logger.info("peer joins by replay peer=%s head=%d", peer_id, head)
                self._snapshots.forget(peer.url)
                return False
            self._bootstrap(peer, client)
        return True

    def _bootstrap(self, peer: PeerRecord, client: RegistryClient) -> None:
        started = time.monotonic()
        self._staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self._staging, prefix="snapshot-") as staged:
            with client.snapshot() as lines:
                header, count = _stage(lines, staged)
            if peer.node_id is not None and peer.node_id != header.node_id:
                raise PeerMismatchError(
                    f"The snapshot is of node {header.node_id}, not {peer.node_id}",
                    detail={"node_id": header.node_id, "expected": peer.node_id},
                )
            self._connect.peers.contact(peer.id, header.node_id, header.epoch)
            staged.seek(0)
            logged = self._snapshots.load(peer.id, header, _chunks(staged), plan)
        logger.info(
            "peer joined from snapshot peer=%s serial=%d entries=%d logged=%d seconds=%.1f",
            peer.id,
            header.serial,
            count,
            logged,
            time.monotonic() - started,
        )
        if peer.blobs == "eager":
            self._fetcher.enqueue(self._replication.missing_blobs(), first=peer.id)


def _stage(lines: Iterator[bytes], staged: IO[bytes]) -> tuple[SnapshotHeader, int]:
    """Write the entry lines to `staged` while hashing every line; returns the header and the
    number of entries once the trailer's count and digest match them.

    Raises:
        SnapshotMismatchError: the trailer does not match, or never came.
    """
    digest = LineDigest()
    try:
        header = parse_header(digest.add(next(lines)))
    except (StopIteration, InvalidError) as exc:
        raise SnapshotMismatchError(f"The peer's snapshot has no valid header: {exc}") from exc
    for line in lines:
        if not line.startswith(TRAILER):
            staged.write(digest.add(line))
            continue
        trailer = parse_line(line)
        count = digest.lines - 1
        if trailer != (count, digest.text()):
            raise SnapshotMismatchError(
                f"The peer's snapshot does not match its digest: {count} entries hashing to "
                f"{digest.text()}, its trailer says {trailer}; nothing of it was applied",
                detail={"entries": count, "digest": digest.text()},
            )
        return header, count
    raise SnapshotMismatchError("The peer's snapshot ended before its trailer")


def _chunks(staged: IO[bytes]) -> Iterator[list[ChangeEntry]]:
    chunk: list[ChangeEntry] = []
    for line in staged:
        entry = parse_line(line)
        if not isinstance(entry, ChangeEntry):
            raise InvalidError("A staged snapshot line is not an entry")
        chunk.append(entry)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
