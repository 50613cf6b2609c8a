"""The services of one node that its HTTP API calls, as the runtime built them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from registry.domain.digest import Digest
from registry.service.auth import AuthService
from registry.service.commits import CommitService
from registry.service.downloads import DownloadCounter
from registry.service.feed import ChangeNotifier, FeedService
from registry.service.identity import NodeIdentity
from registry.service.lineage import LineageService
from registry.service.lookup import LookupService
from registry.service.metadata import MetadataService
from registry.service.mirrors import MirrorService
from registry.service.peers import PeerService
from registry.service.reads import ReadService
from registry.service.repos import RepoService
from registry.service.scanning import ScanService
from registry.service.search import SearchService
from registry.service.status import StatusService
from registry.service.uploads import UploadService
from registry.settings import Settings
from registry.storage import BlobStore


class PullThrough(Protocol):
    """Bytes this node lacks, fetched from its peers and mirrors (implemented by `sync`)."""

    def stream(self, digest: Digest, size: int) -> Iterator[bytes] | None:
        """Stream the blob while storing it; None when a fetch of it is already running."""
        ...

    def fetch_now(self, digest: Digest, size: int, timeout: float = 600) -> bool:
        """Fetch the blob (or join the fetch running) and wait; False if no source had it."""
        ...


@dataclass(frozen=True)
class Services:
    settings: Settings
    blobs: BlobStore
    identity: NodeIdentity
    auth: AuthService
    repos: RepoService
    reads: ReadService
    commits: CommitService
    uploads: UploadService
    peers: PeerService
    feed: FeedService
    notifier: ChangeNotifier
    status: StatusService
    lookup: LookupService
    lineage: LineageService
    scans: ScanService
    downloads: DownloadCounter
    search: SearchService
    metadata: MetadataService
    mirrors: MirrorService
    pullthrough: PullThrough
