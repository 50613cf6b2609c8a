"""The one place a node is wired: every part built from the one `Settings`, and the node's
background jobs started and stopped.

Theory of operation: `Runtime.open` builds the database (migrated to the newest schema), the
blob store, the node's identity and every service; it starts nothing. What only a serving
node does at start (dropping interrupted uploads, the first admin token) is `boot()`. The jobs
(leases, the pullers, the blob fetcher's backfill, the scrub, the mirror pusher, the indexer,
the scanner, the flushes of download counts and of tokens' last use) run inside `jobs()`,
which the HTTP app built by `app()` enters in its lifespan, so `modelyard serve` and the
tests run the same node. A stop begins with `stopping()`, as the server stops accepting
connections: peers' long-polls are answered at once and the pullers halt, so neither holds the
stop while the requests in flight drain. The console commands (`token`, `peer`, `mirror`, `gc`,
`verify`) open a runtime and use its parts without starting the jobs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from fastapi import FastAPI

from mirror.fallback import MirrorBlobSources, public_copies
from mirror.outbox import Pusher
from registry.api.app import create_app
from registry.metadata.db import Database
from registry.service.auth import AuthService
from registry.service.cache import ReadCache
from registry.service.cards import CardReader
from registry.service.commits import CommitService
from registry.service.credentials import credential_box
from registry.service.discussions import DiscussionService
from registry.service.disk import DiskSpace
from registry.service.downloads import DownloadCounter
from registry.service.family import FamilyService
from registry.service.feed import ChangeNotifier, FeedService
from registry.service.files import FileService
from registry.service.gc import GarbageCollector
from registry.service.identity import NodeIdentity, write_marker
from registry.service.images import ImageService
from registry.service.indexer import DocBuilder, Indexer
from registry.service.leases import Leases, holder_name
from registry.service.lineage import LineageService
from registry.service.lookup import LookupService
from registry.service.madewith import MadeWithService
from registry.service.mirrors import MirrorService
from registry.service.model_metadata import ModelMetadataService
from registry.service.modelhashes import ModelHashService
from registry.service.orgs import OrgService
from registry.service.peers import PeerService, Thresholds
from registry.service.quarantine import Quarantine
from registry.service.reads import ReadService
from registry.service.recovery import RecoveryService
from registry.service.replication import ReplicationService
from registry.service.repoinfo import RepoInfoService
from registry.service.repopage import RepoPageService
from registry.service.repos import RepoService
from registry.service.rewrite import RewriteService
from registry.service.scanning import ScanService
from registry.service.scrub import ScrubLoop, ScrubService
from registry.service.search import SearchService
from registry.service.services import Services
from registry.service.settings import RepoSettingsService
from registry.service.snapshot import SnapshotService
from registry.service.status import StatusService
from registry.service.uploads import UploadService
from registry.service.whereabouts import WhereaboutsService
from registry.service.worker import Worker
from registry.service.workflows import WorkflowService
from registry.service.xet import XetRecipes, XetService
from registry.settings import Settings
from registry.storage import BlobStore
from registry.storage.build import build_blob_store
from registry.storage.xet import XetBlobStore
from sync.bootstrap import Bootstrapper
from sync.connect import PeerConnector
from sync.fetcher import BlobFetcher, fetch_workers
from sync.loop import SyncLoop

logger = logging.getLogger(__name__)
SHARED_FEED_POLL = 0.25  # seconds: how soon a long-poll sees another process's write


class Runtime:
    """A node's parts, each built on first use (so `modelyard token create` builds no blob
    store and fixes no node id), and its jobs."""

    def __init__(self, settings: Settings, db: Database, process: str) -> None:
        self.settings = settings
        self.db = db
        self._process = process
        self._jobs: list[SyncLoop | ScrubLoop | Worker] = []  # while they run

    @classmethod
    def open(cls, settings: Settings, *, process: str = "serve") -> Runtime:
        """Open the node on `settings`' data, its schema migrated; starts no job.

        `process` names what this process is for: "serve" holds the node's leases in the
        node's name (see `holder_name`), anything else (e.g. "verify") in a name of its own.

        Raises:
            CredentialsKeyError: stored peer or mirror tokens do not open with the key.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url, busy_timeout=settings.database_busy_timeout)
        try:
            db.migrate()
            runtime = cls(settings, db, process)
            runtime.peers.reseal()  # fail fast when stored credentials do not open
            runtime.mirrors.reseal()
        except BaseException:
            db.dispose()
            raise
        return runtime

    @cached_property
    def blobs(self) -> BlobStore:
        """The node's blob store, reading files uploaded through Xet from their xorbs."""
        return XetBlobStore(build_blob_store(self.settings), XetRecipes(self.db))

    @cached_property
    def xet(self) -> XetService:
        return XetService(
            self.db, self.blobs, self.uploads, self.identity, self.settings.xet, self.cache
        )

    @cached_property
    def identity(self) -> NodeIdentity:
        return NodeIdentity.load(self.db, self.settings.node_id, self.settings.data_dir)

    @cached_property
    def leases(self) -> Leases:
        node_id = self.identity.node_id
        if self._process == "serve":
            return Leases(self.db, holder_name(self.db, node_id), self.settings.lease_seconds)
        holder = f"{node_id}/{self._process}/{socket.gethostname()}/{os.getpid()}"
        return Leases(self.db, holder, self.settings.lease_seconds)

    @cached_property
    def peers(self) -> PeerService:
        sync = self.settings.sync
        thresholds = Thresholds(sync.degraded_after, sync.down_after, sync.up_after)
        box = credential_box(self.settings)
        return PeerService(self.db, thresholds, box, self.identity.node_id)

    @cached_property
    def mirrors(self) -> MirrorService:
        mirror = self.settings.mirror
        box = credential_box(self.settings)
        return MirrorService(self.db, mirror.retry_initial, mirror.retry_max, box)

    @cached_property
    def auth(self) -> AuthService:
        return AuthService(self.db, self.settings.token_recheck_interval)

    @cached_property
    def orgs(self) -> OrgService:
        return OrgService(self.db, self.auth)

    @cached_property
    def cache(self) -> ReadCache:
        cache = ReadCache()
        self.db.after_write.append(cache.new_generation)
        return cache

    @cached_property
    def notifier(self) -> ChangeNotifier:
        notifier = ChangeNotifier(poll=SHARED_FEED_POLL if self.db.shared else None)
        self.db.after_write.append(notifier.notify)
        return notifier

    @cached_property
    def cards(self) -> CardReader:
        return CardReader(self.blobs)

    @cached_property
    def repos(self) -> RepoService:
        return RepoService(self.db, self.blobs, self.identity)

    @cached_property
    def reads(self) -> ReadService:
        return ReadService(self.db, self.cache, self.cards)

    @cached_property
    def commits(self) -> CommitService:
        return CommitService(self.db, self.blobs, self.identity, self.repos)

    @cached_property
    def rewrite(self) -> RewriteService:
        return RewriteService(self.db, self.identity, self.cache)

    @cached_property
    def quarantine(self) -> Quarantine:
        return Quarantine(self.db, self.blobs)

    @cached_property
    def recovery(self) -> RecoveryService:
        return RecoveryService(self.db, self.blobs, self.identity)

    @cached_property
    def uploads(self) -> UploadService:
        return UploadService(self.db, self.blobs, self.identity, self.quarantine, self.disk)

    @cached_property
    def disk(self) -> DiskSpace:
        settings = self.settings
        blob_dir = None if settings.blob_store else settings.blob_dir
        return DiskSpace(settings.data_dir, blob_dir, settings.limits.disk_reserve)

    @cached_property
    def downloads(self) -> DownloadCounter:
        return DownloadCounter(self.db)

    @cached_property
    def scans(self) -> ScanService:
        return ScanService(self.db, self.blobs)

    @cached_property
    def model_hashes(self) -> ModelHashService:
        return ModelHashService(self.db, self.blobs, self.settings.hashes.batch)

    @cached_property
    def images(self) -> ImageService:
        return ImageService(self.db, self.blobs, self.settings.images.batch)

    @cached_property
    def madewith(self) -> MadeWithService:
        return MadeWithService(self.db, self.reads, self.lookup)

    @cached_property
    def docs(self) -> DocBuilder:
        return DocBuilder(self.blobs, self.cards)

    @cached_property
    def indexer(self) -> Indexer:
        return Indexer(self.db, self.docs)

    @cached_property
    def lookup(self) -> LookupService:
        return LookupService(self.db)

    @cached_property
    def scrub(self) -> ScrubService:
        return ScrubService(self.db, self.blobs, self.quarantine, self.leases, self.settings.scrub)

    @cached_property
    def replication(self) -> ReplicationService:
        return ReplicationService(self.db, self.blobs, self.identity, self.cache)

    @cached_property
    def snapshots(self) -> SnapshotService:
        return SnapshotService(self.db, self.identity, self.replication)

    @cached_property
    def connector(self) -> PeerConnector:
        allow_private = self.settings.allow_private_redirects
        return PeerConnector(
            self.peers, self.identity.node_id, allow_private, self.settings.public_url
        )

    @cached_property
    def fetcher(self) -> BlobFetcher:
        """Blobs from peers, then mirrors: eager replication, pull-through, scrub repairs."""
        mirrors = MirrorBlobSources(
            self.mirrors,
            public_copies(self.lookup),
            allow_private_redirects=self.settings.allow_private_redirects,
        )
        workers = (
            (self.settings.sync.blob_workers or fetch_workers()) if self._process == "serve" else 1
        )
        return BlobFetcher(self.uploads, self.connector, workers, mirrors, self.xet.adopt)

    @cached_property
    def services(self) -> Services:
        """What the HTTP API calls."""
        metadata = ModelMetadataService(self.reads, self.commits, self.scans)
        search = SearchService(self.db, self.indexer, self.docs, self.reads, self.scans)
        return Services(
            settings=self.settings,
            identity=self.identity,
            auth=self.auth,
            orgs=self.orgs,
            repos=self.repos,
            reads=self.reads,
            repoinfo=RepoInfoService(
                self.identity,
                self.reads,
                metadata,
                self.scans,
                self.downloads,
                self.peers,
                self.images,
                self.madewith,
            ),
            madewith=self.madewith,
            commits=self.commits,
            rewrite=self.rewrite,
            discussions=DiscussionService(self.db, self.identity, self.blobs),
            uploads=self.uploads,
            files=FileService(
                self.blobs,
                self.identity,
                self.reads,
                self.uploads,
                self.peers,
                self.scans,
                self.downloads,
                self.fetcher,
                self.xet,
            ),
            peers=self.peers,
            feed=FeedService(self.db, self.identity, self.notifier),
            snapshots=self.snapshots,
            status=StatusService(
                self.db,
                self.peers,
                self.identity,
                (self.disk, self.blobs),
                (self.indexer, self.scans, self.mirrors, self.scrub),
            ),
            lookup=self.lookup,
            lineage=LineageService(self.repos, self.reads, self.lookup),
            search=search,
            model_metadata=metadata,
            mirrors=self.mirrors,
            xet=self.xet,
            repo_settings=RepoSettingsService(self.db, self.identity),
            repo_pages=RepoPageService(
                self.reads,
                self.scans,
                metadata,
                FamilyService(self.reads, self.lookup, search),
                WhereaboutsService(self.db, self.identity, self.peers),
                search,
                self.blobs,
                self.madewith,
            ),
            workflows=WorkflowService(self.db, self.scans),
        )

    def boot(self) -> str | None:
        """What a node does before it serves: drop the uploads a stop interrupted, and make
        the admin token (the configured one, or a new one on the first start).

        Returns:
            A newly created admin token, to be shown once; None if there was one already.
        """
        removed = self.blobs.clear_uploads()
        if removed:
            logger.warning("removed %d interrupted uploads", removed)
        secret = self.settings.admin_token
        return self.auth.ensure_admin(secret.get_secret_value() if secret else None)

    def app(self) -> FastAPI:
        """The node's HTTP app; serving it runs the node's jobs (`jobs()`)."""
        return create_app(self.settings, self.services, jobs=self.jobs)

    @contextmanager
    def jobs(self) -> Iterator[None]:
        """Run the node's background jobs until the block ends."""
        self.leases.start()
        replicator = SyncLoop(
            self.identity,
            self.leases,
            self.peers,
            self.replication,
            self.fetcher,
            self.connector,
            self.settings.sync,
            Bootstrapper(
                self.snapshots,
                self.connector,
                self.replication,
                self.fetcher,
                self.settings.sync,
                self.settings.data_dir,
            ),
        )
        scrubber = ScrubLoop(self.scrub, self.settings.scrub, self.fetcher.fetch_now)
        workers = self._workers()
        self._jobs = [replicator, scrubber, *workers]
        replicator.start()
        scrubber.start()
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for job in self._jobs:  # all at once: each then ends while the others are waited for
                job.halt()
            for job in self._jobs:
                job.stop()
            self.leases.stop()
            self._jobs = []

    def stopping(self) -> None:
        """The server stops accepting connections: answer open long-polls with what they have
        and halt the pullers and helpers now, so they end while the requests in flight drain
        rather than one after another once they have (a helper at nice 19 on a busy machine
        may take half a second to wake)."""
        if "notifier" in self.__dict__:  # built: long-polls may be waiting on it
            self.notifier.close()
        for job in self._jobs:
            job.halt()

    def _workers(self) -> list[Worker]:
        """The node's helpers; each one off only delays or thins answers."""
        settings = self.settings
        counts = self.downloads
        workers = [
            Worker(
                "download-counts",
                counts.flush,
                settings.downloads_flush_interval,
                drain=False,
                on_stop=counts.flush,  # what was counted before a clean stop is kept
            ),
            Worker(
                "token-use",
                self.auth.flush_use,
                settings.token_recheck_interval,
                drain=False,
                on_stop=self.auth.flush_use,
            ),
        ]
        leases = self.leases  # one process of the node runs each of these
        if settings.scan.enabled:
            workers.append(
                Worker("scanner", self.scans.run_once, settings.scan.interval, leases=leases)
            )
        if settings.hashes.enabled:
            hashes = self.model_hashes
            interval = settings.hashes.interval
            workers.append(
                Worker("model-hashes", hashes.run_once, interval, leases=leases, low_priority=True)
            )
        if settings.images.enabled:
            images, interval = self.images, settings.images.interval
            workers.append(
                Worker("images", images.run_once, interval, leases=leases, low_priority=True)
            )
        if settings.mirror.enabled:
            pusher = Pusher(
                self.mirrors,
                self.reads,
                self.blobs,
                recipes=XetRecipes(self.db),  # a bucket stores Xet files as their xorbs
                allow_private_redirects=settings.allow_private_redirects,
            )
            interval = settings.mirror.interval
            workers.append(
                Worker("mirrors", pusher.run_once, interval, leases=leases, on_stop=pusher.close)
            )
        if settings.index.enabled:
            batch = settings.index.batch
            workers.append(
                Worker(
                    "indexer",
                    lambda: self.indexer.run_once(batch),
                    settings.index.interval,
                    leases=leases,
                )
            )
        return workers

    def collector(self, grace: float) -> GarbageCollector:
        """`modelyard gc`'s collector over this node's database and blob store."""
        return GarbageCollector(self.db, self.blobs, grace, self.settings.xet.dedup_seconds)

    def close(self) -> None:
        if "fetcher" in self.__dict__:  # built: its pool may be fetching
            self.fetcher.stop()
        if "identity" in self.__dict__:  # the marker describes the database as it is left
            write_marker(self.db, self.settings.data_dir)
        self.db.dispose()
