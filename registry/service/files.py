"""Serving a file's bytes: by repo path (`/resolve/`) or by BLAKE3 (`/v1/blobs/`), with who may
read it, what its headers say about it, and bytes this node lacks pulled through from a peer.

Theory of operation: `resolve` answers from the read cache without leaving the event loop when
the commit was seen before, and looks up on a thread otherwise. `source` then says where the
bytes are: in this node's blob store, or (a replica that has not fetched them yet, or a blob a
scrub holds) streamed from the first peer or mirror that has them while they are stored here.
A stream starts only once a source answered, so a client never gets a 200 without bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.commit import TreeEntry
from registry.domain.digest import Digest
from registry.domain.errors import (
    BlobNotFoundError,
    BlobStoreUnavailableError,
    BlobUnavailableError,
    InsufficientStorageError,
)
from registry.domain.names import RepoId
from registry.domain.records import RepoRecord
from registry.domain.xet.types import XetHash
from registry.service.downloads import DownloadCounter
from registry.service.identity import NodeIdentity
from registry.service.offload import on_thread
from registry.service.peers import PeerService
from registry.service.pullthrough import PullThrough
from registry.service.reads import ReadService, Snapshot
from registry.service.scanning import SCANNED, ScanService, Verdict
from registry.service.uploads import UploadService
from registry.service.xet import XetService
from registry.storage import BlobStore


@dataclass(frozen=True)
class Replica:
    """This node holds a replica of the repo: its home, and how old our copy may be."""

    home: str
    age_seconds: float | None


@dataclass(frozen=True)
class ResolvedFile:
    repo: RepoRecord
    commit_id: str
    entry: TreeEntry
    replica: Replica | None
    verdict: Verdict | None  # for scanned kinds of files
    xet_hash: XetHash | None = None  # uploaded through Xet, and servable through it here


@dataclass(frozen=True)
class Stored:
    """The bytes are in this node's blob store."""

    blobs: BlobStore
    digest: Digest
    size: int


@dataclass(frozen=True)
class Streamed:
    """The bytes come from a peer or mirror, verified and stored here as they pass."""

    chunks: Iterator[bytes]


def replica_of(peers: PeerService, node: NodeIdentity, repo: RepoRecord) -> Replica | None:
    if repo.home_node == node.node_id:
        return None
    return Replica(repo.home_node, peers.copy_age(repo.home_node))


class FileService:
    def __init__(
        self,
        blobs: BlobStore,
        node: NodeIdentity,
        reads: ReadService,
        uploads: UploadService,
        peers: PeerService,
        scans: ScanService,
        counter: DownloadCounter,
        pullthrough: PullThrough,
        xet: XetService,
    ) -> None:
        self._blobs = blobs
        self._node = node
        self._reads = reads
        self._uploads = uploads
        self._peers = peers
        self._scans = scans
        self._counter = counter
        self._pullthrough = pullthrough
        self._xet = xet

    async def resolve(
        self, principal: Principal, repo: RepoId, revision: str, path: str, *, download: bool
    ) -> ResolvedFile:
        """The file at `path` of a revision; `download` counts it as one (a GET from its
        first byte).

        Raises:
            RepoNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError.
        """
        cached = await self._reads.cached_snapshot(principal, repo, revision)
        hit = self._reads.cached_file(cached, path) if cached else None
        if cached is not None and hit is not None:
            snap, entry = cached, hit
        else:  # not all cached: look up on a thread
            snap, entry = await on_thread(self._lookup, principal, repo, revision, path)
        if snap.repo.gated is not None:
            await on_thread(self._reads.require_gate, principal, snap.repo)
        if download:
            self._counter.count(snap.repo.id)
        xet_hash = None
        if entry.lfs:
            known = self._xet.cached_hash(entry.blake3)
            xet_hash = known[0] if known else await on_thread(self._xet.xet_hash, entry.blake3)
        return ResolvedFile(
            snap.repo,
            snap.commit.id,
            entry,
            replica_of(self._peers, self._node, snap.repo),
            self._scans.verdict_of(entry.path, entry.blake3.hex),
            xet_hash,
        )

    async def cached_head(
        self, principal: Principal, repo: RepoId, revision: str, path: str
    ) -> ResolvedFile | None:
        """The file, if a HEAD of it can be answered from the read cache alone: the commit
        and tree cached, the bytes stored, the repo homed here (a replica adds headers about
        its copy) and the scan verdict known. None otherwise. Awaits only a look at a shared
        database's write generation."""
        snap = await self._reads.cached_snapshot(principal, repo, revision)
        entry = self._reads.cached_file(snap, path) if snap else None
        if snap is None or entry is None or snap.repo.home_node != self._node.node_id:
            return None
        if snap.repo.gated is not None:
            return None  # the regular route checks the gate
        if entry.lfs and self._xet.cached_hash(entry.blake3) != (None,):
            return None  # Xet headers, or not known yet whether: the regular route knows
        if self._blobs.stat(entry.blake3) is None:
            return None
        verdict = None
        if entry.path.endswith(SCANNED):
            verdict = self._scans.cached(entry.blake3.hex)
            if verdict is None:
                return None  # pending or not loaded yet: the regular route looks it up
        return ResolvedFile(snap.repo, snap.commit.id, entry, None, verdict)

    def _lookup(
        self, principal: Principal, repo: RepoId, revision: str, path: str
    ) -> tuple[Snapshot, TreeEntry]:
        snap = self._reads.snapshot(principal, repo, revision)
        return snap, self._reads.file(snap, path)

    async def source(self, file: ResolvedFile) -> Stored | Streamed:
        """Where the bytes of a resolved file come from.

        Raises:
            BlobQuarantinedError: held by a scrub, and no peer or mirror had a good copy.
            BlobUnavailableError: not stored here, and no peer or mirror had them.
            BlobStoreUnavailableError: the blob store fails, and no peer or mirror had them.
        """
        entry = file.entry
        failing = await on_thread(self._blobs.failing)
        if failing is not None:  # this node's blob store fails: a peer or mirror may serve
            return Streamed(await self._relay(file, failing))
        if await on_thread(self._uploads.servable, entry.blake3) is not None:
            return Stored(self._blobs, entry.blake3, entry.size)
        streamed = await self._pull_through(entry)
        if streamed is not None:
            return Streamed(streamed)
        missing = BlobUnavailableError(
            f"The bytes of {entry.path} are not on this node yet and no peer could serve them",
            detail={"commit": file.commit_id, "path": entry.path},
        )
        await on_thread(self._uploads.require_servable, entry.blake3, missing)
        return Stored(self._blobs, entry.blake3, entry.size)

    async def _relay(self, file: ResolvedFile, failing: str) -> Iterator[bytes]:
        """The file's bytes from a peer or mirror, verified and not stored.

        Raises:
            BlobStoreUnavailableError: no peer or mirror has them either.
        """
        entry = file.entry
        streamed = await _started(self._pullthrough.relay(entry.blake3, entry.size))
        if streamed is None:
            raise BlobStoreUnavailableError(
                f"This node's blob store fails ({failing}) and no peer or mirror could serve "
                f"{entry.path}; try again later",
                detail={"commit": file.commit_id, "path": entry.path},
            )
        return streamed

    async def _pull_through(self, entry: TreeEntry) -> Iterator[bytes] | None:
        """Stream from a peer while storing, or wait for the fetch already running (None); a
        blob this node has no room for is relayed, not stored."""
        stream = self._pullthrough.stream(entry.blake3, entry.size)
        if stream is None:
            try:
                await on_thread(self._pullthrough.fetch_now, entry.blake3, entry.size)
            except InsufficientStorageError:  # the running fetch found no room to store it
                return await _started(self._pullthrough.relay(entry.blake3, entry.size))
            return None
        return await _started(stream)

    def blob(self, principal: Principal, digest: Digest) -> Stored:
        """A blob by its BLAKE3, if the principal may read it and it may be served.

        Raises:
            BlobNotFoundError: not stored here, or in no repo the principal may see.
            BlobQuarantinedError: held by a scrub.
        """
        missing = BlobNotFoundError(f"Blob {digest} not found")
        if not self._uploads.readable(principal, digest):
            raise missing
        info = self._uploads.require_servable(digest, missing)
        return Stored(self._blobs, digest, info.size)


async def _started(stream: Iterator[bytes]) -> Iterator[bytes] | None:
    """The stream, once a source has answered (before a 200 is committed to); None if none could."""
    try:
        first = await on_thread(next, stream, None)
    except BlobUnavailableError:
        return None
    return iter(()) if first is None else itertools.chain([first], stream)
