"""The composition of one node: database, blob store, identity and services."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from registry.domain.errors import CredentialsKeyError
from registry.metadata.db import Database
from registry.metadata.fulltext import FullText
from registry.service.auth import AuthService
from registry.service.cache import ReadCache
from registry.service.cards import CardReader
from registry.service.commits import CommitService
from registry.service.credentials import credential_box
from registry.service.downloads import DownloadCounter
from registry.service.feed import ChangeNotifier, FeedService
from registry.service.indexer import DocBuilder, Indexer
from registry.service.leases import Leases, holder_name
from registry.service.lineage import LineageService
from registry.service.lookup import LookupService
from registry.service.metadata import MetadataService
from registry.service.mirrors import MirrorService
from registry.service.node import NodeIdentity
from registry.service.peers import PeerService, Thresholds
from registry.service.quarantine import Quarantine
from registry.service.reads import ReadService
from registry.service.replication import ReplicationService
from registry.service.repos import RepoService
from registry.service.scanning import ScanService
from registry.service.scrub import ScrubService
from registry.service.search import SearchService
from registry.service.status import StatusService
from registry.service.uploads import UploadService
from registry.settings import Settings
from registry.storage import BlobStore
from registry.storage.build import build_blob_store

logger = logging.getLogger(__name__)
SHARED_FEED_POLL = 0.25  # seconds: how soon a long-poll sees another process's write


@dataclass
class Node:
    settings: Settings
    db: Database
    blobs: BlobStore
    identity: NodeIdentity
    auth: AuthService
    repos: RepoService
    reads: ReadService
    commits: CommitService
    uploads: UploadService
    peers: PeerService
    replication: ReplicationService
    feed: FeedService
    notifier: ChangeNotifier
    status: StatusService
    lookup: LookupService
    lineage: LineageService
    scans: ScanService
    downloads: DownloadCounter
    indexer: Indexer
    search: SearchService
    metadata: MetadataService
    mirrors: MirrorService
    leases: Leases
    quarantine: Quarantine
    scrub: ScrubService
    new_admin_token: str | None = None

    @classmethod
    def open(cls, settings: Settings) -> Node:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        box = credential_box(settings)
        mirrors = MirrorService(db, settings.mirror.retry_initial, settings.mirror.retry_max, box)
        sync = settings.sync
        thresholds = Thresholds(sync.degraded_after, sync.down_after, sync.up_after)
        peers = PeerService(db, thresholds, box)
        try:  # fail fast when the stored credentials do not open with the configured key
            peers.reseal()
            mirrors.reseal()
        except CredentialsKeyError:
            db.dispose()
            raise
        blobs = build_blob_store(settings)
        removed = blobs.clear_uploads()
        if removed:
            logger.warning("removed %d interrupted uploads", removed)
        identity = NodeIdentity.load(db, settings.node_id)
        auth = AuthService(db)
        secret = settings.admin_token.get_secret_value() if settings.admin_token else None
        new_token = auth.ensure_admin(secret)
        repos = RepoService(db, blobs, identity)
        commits = CommitService(db, blobs, identity, repos)
        cache = ReadCache()
        cards = CardReader(blobs)
        reads = ReadService(db, cache, cards)
        scans = ScanService(db, blobs)
        builder = DocBuilder(blobs, cards)
        fulltext = FullText(db.engine)
        indexer = Indexer(db, builder, fulltext)
        lookup = LookupService(db)
        db.after_write.append(cache.new_generation)
        notifier = ChangeNotifier(poll=SHARED_FEED_POLL if db.shared else None)
        db.after_write.append(notifier.notify)
        leases = Leases(db, holder_name(db, identity.node_id), settings.lease_seconds)
        quarantine = Quarantine(db, blobs)
        scrub = ScrubService(db, blobs, quarantine, leases, settings.scrub)
        node = cls(
            settings,
            db,
            blobs,
            identity,
            auth,
            repos,
            reads,
            commits,
            UploadService(db, blobs, identity, quarantine),
            peers,
            ReplicationService(db, blobs, identity),
            FeedService(db),
            notifier,
            StatusService(db, peers, identity, settings.data_dir, (indexer, scans, mirrors, scrub)),
            lookup,
            LineageService(repos, reads, lookup),
            scans,
            DownloadCounter(db),
            indexer,
            SearchService(db, indexer, builder, fulltext, reads, scans),
            MetadataService(reads, commits, scans),
            mirrors,
            leases,
            quarantine,
            scrub,
            new_token,
        )
        logger.info("node open node_id=%s data_dir=%s", identity.node_id, settings.data_dir)
        return node

    def close(self) -> None:
        self.db.dispose()
