"""What a person or Prometheus needs to judge a node at a glance."""

from __future__ import annotations

import time
from dataclasses import dataclass

from registry import __version__
from registry.domain.errors import DatabaseUnavailableError
from registry.metadata.activity import RecentCommit
from registry.metadata.db import Database
from registry.metrics import HealthSample, MirrorSample, NodeSample, PeerSample, ScrubSample
from registry.service.disk import DiskSpace, DiskState
from registry.service.feed import LostHistory, lost_history
from registry.service.identity import NodeIdentity
from registry.service.indexer import Indexer
from registry.service.mirrors import MirrorService, MirrorView
from registry.service.peers import PeerService, PeerView
from registry.service.replication import Collision, collisions
from registry.service.scanning import ScanService
from registry.service.scrub import ScrubService, ScrubStatus
from registry.storage import BlobStore

SCAN_COUNT_CAP = 1000


@dataclass(frozen=True)
class Status:
    node_id: str
    version: str
    epoch: str
    started: float
    uptime_seconds: float
    serial: int
    blobs: int
    blob_bytes: int
    peers: list[PeerView]
    index_behind_entries: int  # change-log entries search reads directly for now
    index_behind_seconds: float
    scans_pending: int  # files waiting for a verdict (counted up to SCAN_COUNT_CAP)
    mirrors: list[MirrorView]
    recent: list[RecentCommit]  # public repos only: the page is public
    scrub: ScrubStatus
    restored_ms: int | None  # when this node last found itself restored from a backup
    lost_history: list[LostHistory]  # peers that keep what the restore lost here
    collisions: list[Collision]  # peers' repos whose ids are held here for another home
    disk: DiskState


@dataclass(frozen=True)
class NodeHealth:
    """Alive is answering at all; `writable` is whether the node can take writes now."""

    disk: DiskState
    database: str  # ok | unavailable
    blob_store: str  # ok | failing (an S3 store whose last request failed)
    serial: int | None  # None while the database does not answer
    problems: list[str]

    @property
    def writable(self) -> bool:
        return not self.problems


class StatusService:
    def __init__(
        self,
        db: Database,
        peers: PeerService,
        node: NodeIdentity,
        storage: tuple[DiskSpace, BlobStore],
        helpers: tuple[Indexer, ScanService, MirrorService, ScrubService],
    ) -> None:
        self._indexer, self._scans, self._mirrors, self._scrub = helpers
        self._disk, self._blobs = storage
        self._db = db
        self._peers = peers
        self._node = node
        self.started = time.time()

    def status(self, recent: int = 10) -> Status:
        with self._db.read() as tx:
            stored = tx.blobs.totals()
            latest = tx.activity.recent_commits(recent)
            restored = tx.values.get("restored_ms")
            lost = lost_history(tx)
            collided = collisions(tx)
        index = self._indexer.position()
        return Status(
            self._node.node_id,
            __version__,
            self._node.epoch,
            self.started,
            time.time() - self.started,
            self._db.head_serial(),
            stored.count,
            stored.bytes,
            self._peers.views(),
            index.behind_entries,
            index.behind_seconds,
            len(self._scans.pending(SCAN_COUNT_CAP)),
            self._mirrors.views(),
            latest,
            self._scrub.status(),
            int(restored) if restored else None,
            lost,
            collided,
            self._disk.state(),
        )

    def health(self) -> NodeHealth:
        """The disk's state, whether the database answers and whether the blob store did
        last: never raises."""
        disk = self._disk.state()
        problems = [disk.problem] if disk.problem and not disk.writable else []
        try:
            serial: int | None = self._db.head_serial()
            database = "ok"
        except DatabaseUnavailableError as exc:
            serial, database = None, "unavailable"
            problems.append(exc.message)
        failing = self._blobs.failing()
        if failing is not None:
            problems.append(f"the blob store fails: {failing}")
        store = "ok" if failing is None else "failing"
        return NodeHealth(disk, database, store, serial, problems)

    def health_sample(self) -> HealthSample:
        health = self.health()
        disk = health.disk
        return HealthSample(
            disk.free,
            disk.total,
            disk.reserve,
            disk.state,
            health.database == "ok",
            health.blob_store == "ok",
        )

    def sample(self) -> NodeSample:
        with self._db.read() as tx:
            stored = tx.blobs.totals()
        peers = [
            PeerSample(
                p.id,
                p.state,
                p.lag_entries,
                p.lag_seconds,
                p.last_success_ms / 1000 if p.last_success_ms else None,
                p.bad_blobs,
                p.set_aside,
                p.diverged_ms / 1000 if p.diverged_ms else None,
                p.collisions,
            )
            for p in self._peers.views()
        ]
        index = self._indexer.position()
        return NodeSample(
            stored.count,
            stored.bytes,
            self._db.head_serial(),
            self.started,
            peers,
            index.behind_entries,
            index.behind_seconds,
            len(self._scans.pending(SCAN_COUNT_CAP)),
            [
                MirrorSample(
                    m.name,
                    m.backlog,
                    m.state == "failing",
                    m.last_success_ms / 1000 if m.last_success_ms else None,
                    m.rollbacks,
                )
                for m in self._mirrors.views()
            ],
            self._scrub_sample(),
        )

    def _scrub_sample(self) -> ScrubSample:
        scrub = self._scrub.status()
        last = scrub.last_pass_ms / 1000 if scrub.last_pass_ms else None
        return ScrubSample(scrub.totals, scrub.quarantined, last)
