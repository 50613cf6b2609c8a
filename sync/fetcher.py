"""Fetching blobs from peers (and, after them, any extra sources the node was given, such as
its mirrors): verified, one download per blob, next source on failure."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from registry.client import RetryPolicy
from registry.client.streaming import StreamFailedError
from registry.domain.digest import REGULAR_FILE_MAX, Digest, Hasher, start_helpers
from registry.domain.errors import (
    BlobUnavailableError,
    DigestMismatchError,
    InsufficientStorageError,
    NotFoundError,
    SizeMismatchError,
)
from registry.domain.records import PeerRecord
from registry.service.priority import wait_ended
from registry.service.uploads import UploadService
from registry.storage import Expected
from sync.blobstream import Partial, Partials, WriteFailedError, receive
from sync.connect import PeerConnector
from sync.fairqueue import FairQueue, LiveFirst
from sync.sha256fill import Sha256Fill

logger = logging.getLogger(__name__)
STOP_WAIT = 1.0  # seconds a stop waits at most for the background fetch threads to end


class BlobSource(Protocol):
    """Somewhere a blob may be read by its BLAKE3 (a peer, a mirror)."""

    @property
    def name(self) -> str: ...

    def open_blob(self, digest: Digest, size: int) -> AbstractContextManager[Iterator[bytes]]: ...

    def bad_bytes(self, error: str) -> None:
        """It served bytes that did not hash to the name asked for."""
        ...


# How bytes from a source reach the client: stored on their way, or only checked.
Through = Callable[[BlobSource, Digest, int, Iterator[bytes]], Iterator[bytes]]


class PeerBlobs:
    """A configured peer as a blob source; its failures count in the peer's health."""

    def __init__(self, connect: PeerConnector, peer: PeerRecord, attempts: int) -> None:
        self._connect = connect
        self._peer = peer
        self._attempts = attempts
        self.name = peer.id

    @contextmanager
    def open_blob(self, digest: Digest, size: int) -> Iterator[Iterator[bytes]]:
        retry = RetryPolicy(attempts=self._attempts)
        with (
            self._connect.client(self._peer, retry) as client,
            client.open_blob(digest, size) as chunks,
        ):
            yield chunks

    def bad_bytes(self, error: str) -> None:
        self._connect.peers.health.bad_blob(self._peer.id, error)

    def receive(
        self, digest: Digest, size: int, partial: Partial, landed: Callable[[int], None]
    ) -> None:
        """The blob's bytes from `partial.received` on, into its writer (see blobstream)."""
        url = f"{self._peer.url.rstrip('/')}/v1/blobs/{digest.hex}"
        headers = self._connect.headers(self._peer)
        receive(url, headers, self._connect.guard().check, partial, size, landed)


def fetch_workers() -> int:
    """Background blob fetches at once, by default: one per core, 2 to 8 (each hashes and
    writes on its own thread; more than the cores only share them)."""
    return max(2, min(8, os.cpu_count() or 1))


class BlobFetcher:
    """`workers` background fetches at once (eager catch-up, backfill), at most about half of
    them (and at least 2) for the blobs of one peer; fetches a caller waits for (`fetch_now`:
    scrub repairs, Xet) run on their own workers, never queued behind a catch-up."""

    def __init__(
        self,
        uploads: UploadService,
        connect: PeerConnector,
        workers: int,
        extra: Callable[[], Sequence[BlobSource]] | None = None,
        fetched: Callable[[Digest], None] | None = None,
    ) -> None:
        self._uploads = uploads
        self._fetched = fetched  # told of each blob stored (a xorb a recipe waits for?)
        self._connect = connect
        self._peers = connect.peers
        self._catchup = connect.peers.catchup
        self._extra = extra  # tried after every peer (the node's mirrors)
        start_helpers()  # at this thread's priority, not a background fetch's
        self._queue = FairQueue(workers, per_key=max(2, workers // 2 + 1))
        self.live = LiveFirst()  # pullers hold it while they apply news
        self._urgent = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-now")
        self._partials = Partials(limit=2 * workers)
        self._sha256 = Sha256Fill(uploads, busy=lambda: bool(self._inflight))
        self._inflight: dict[Digest, Future[bool]] = {}
        self._lock = threading.Lock()
        self._no_room: int | None = None  # the smallest fetched blob this node had no room for
        self._sha256.start()  # it sweeps first: blobs a restart left without SHA-256

    def stop(self) -> None:
        """Stop fetching; wait a little (STOP_WAIT) for the low-priority threads to end (see
        registry.service.priority): a fetch still running is cut by the process's exit."""
        self._queue.stop()
        self._urgent.shutdown(wait=False, cancel_futures=True)
        self._partials.clear()
        self._sha256.stop()
        wait_ended([*self._queue.threads, *self._sha256.threads], STOP_WAIT)

    def enqueue(self, blobs: list[tuple[Digest, int]], first: str | None = None) -> None:
        """Fetch these in the background, from `first` before the other peers. They count in
        the catch-up progress of `first` (else of the peer tried first)."""
        owner = first or self._first_peer()
        for digest, size in blobs:
            with self._lock:
                if digest in self._inflight:
                    continue
                self._catchup.want(owner, digest.hex, size)
                future = self._queue.submit(
                    owner, functools.partial(self._fetch, digest, size, first, owner)
                )
                self._inflight[digest] = future
            future.add_done_callback(functools.partial(self._finished, owner, digest))

    def fetch_now(self, digest: Digest, size: int, timeout: float = 600) -> bool:
        """Fetch a blob (or join the fetch already running) and wait for it."""
        with self._lock:
            future = self._inflight.get(digest)
            started = future is None
            if future is None:
                future = self._urgent.submit(self._fetch, digest, size, None, None)
                self._inflight[digest] = future
        if started:  # outside the lock: a fetch done already calls back in this thread
            future.add_done_callback(lambda _: self._done(digest))
        return future.result(timeout=timeout)

    def _finished(self, owner: str, digest: Digest, future: Future[bool]) -> None:
        stored = not future.cancelled() and future.exception() is None and future.result()
        self._catchup.done(owner, digest.hex, stored)
        self._done(digest)

    def _first_peer(self) -> str:
        peers = self._ordered_peers(None)
        return peers[0].id if peers else "-"

    def _done(self, digest: Digest) -> None:
        with self._lock:
            self._inflight.pop(digest, None)

    def stream(self, digest: Digest, size: int) -> Iterator[bytes] | None:
        """Pull-through: stream the blob from the first source that has it while storing it.

        Returns None when a fetch of this blob is already running (wait with fetch_now). The
        stored copy is published only if its hash matches; the last chunk is held back until
        then, so a client never receives a complete response with wrong bytes. With no room
        on this node's disk for it, the blob is relayed (verified, not stored)."""
        try:
            self._uploads.require_room(size, "a blob fetched for this node")
        except InsufficientStorageError:  # no room to keep it (said by the fetches): relay it
            return self.relay(digest, size)
        with self._lock:
            if digest in self._inflight:
                return None
            future: Future[bool] = Future()
            self._inflight[digest] = future
        return self._stream(digest, size, future)

    def relay(self, digest: Digest, size: int) -> Iterator[bytes]:
        """Stream the blob from the first source that has it, verified but not stored: for
        when this node's own blob store fails. The last chunk is held back until the bytes
        check, so a client never receives a complete response with wrong bytes."""
        return self._serve(digest, size, self._check_while_streaming)

    def _stream(self, digest: Digest, size: int, future: Future[bool]) -> Iterator[bytes]:
        stored = False
        try:
            yield from self._serve(digest, size, self._store_while_streaming)
            stored = True
        finally:
            future.set_result(stored)
            self._done(digest)

    def _serve(self, digest: Digest, size: int, through: Through) -> Iterator[bytes]:
        """The bytes from the first source that has them, passed `through` a check."""
        for source in self._sources(None, attempts=1):
            try:
                opened = source.open_blob(digest, size)
                chunks = opened.__enter__()
            except Exception as exc:  # this source does not have it: next one
                logger.info("pull-through source skipped source=%s error=%s", source.name, exc)
                continue
            sent = False
            try:
                for chunk in through(source, digest, size, chunks):
                    sent = True
                    yield chunk
                return
            except (DigestMismatchError, SizeMismatchError):
                if sent:
                    raise  # bytes went out already: abort the client's response
                continue  # nothing sent yet: the next source may have good bytes
            finally:
                opened.__exit__(None, None, None)
        raise BlobUnavailableError(f"No peer or mirror could serve blob {digest}")

    def _check_while_streaming(
        self, source: BlobSource, digest: Digest, size: int, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        hasher = Hasher(size, sha256=False)
        held: bytes | None = None
        for chunk in chunks:
            hasher.update(chunk)
            if held is not None:
                yield held
            held = chunk
        try:
            Expected(blake3=digest, size=size).check(hasher.result())
        except (DigestMismatchError, SizeMismatchError) as exc:
            source.bad_bytes(f"wrong bytes for {digest}: {exc}")
            raise
        if held is not None:
            yield held

    def _store_while_streaming(
        self, source: BlobSource, digest: Digest, size: int, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        writer = self._uploads.writer(size)
        held: bytes | None = None
        try:
            for chunk in chunks:
                writer.write(chunk)
                if held is not None:
                    yield held
                held = chunk
        except BaseException:
            writer.abort()
            raise
        try:
            self._uploads.complete(writer, Expected(blake3=digest, size=size))
        except (DigestMismatchError, SizeMismatchError) as exc:
            source.bad_bytes(f"wrong bytes for {digest}: {exc}")
            raise
        self._stored(digest, size)
        if held is not None:
            yield held

    def _stored(self, digest: Digest, size: int) -> None:
        with self._lock:  # room again once a blob as large as one refused fits
            resumed = self._no_room is not None and size >= self._no_room
            if resumed:
                self._no_room = None
        if resumed:
            logger.info("blob fetches resume: this node can store them again")
        if self._fetched is not None:
            self._fetched(digest)

    def _sources(self, first: str | None, attempts: int) -> list[BlobSource]:
        """Peers healthy-first (`first` before all), then the extra sources."""
        ordered = self._ordered_peers(first)
        peers: list[BlobSource] = [PeerBlobs(self._connect, p, attempts) for p in ordered]
        return peers + list(self._extra() if self._extra is not None else [])

    def _ordered_peers(self, first: str | None) -> list[PeerRecord]:
        rank = {"up": 0, "unknown": 1, "degraded": 2, "down": 3}

        def order(peer_id: str) -> tuple[int, int, int]:
            health = self._peers.health.get(peer_id)
            return (0 if peer_id == first else 1, health.bad_blobs, rank[health.state])

        return sorted(self._peers.all(), key=lambda p: order(p.id))

    def _fetch(self, digest: Digest, size: int, first: str | None, owner: str | None) -> bool:
        if self._uploads.stored(digest) is not None:
            self._stored(digest, size)  # stored before a crash let it be adopted, say
            return True
        try:
            self._uploads.require_room(size, "a blob fetched for this node")
        except InsufficientStorageError as exc:
            self._cannot_store(size, exc)
            raise
        for source in self._sources(first, attempts=2):
            try:
                if isinstance(source, PeerBlobs):
                    self._receive(source, digest, size, owner)
                else:
                    with source.open_blob(digest, size) as chunks:
                        self._uploads.ingest(chunks, Expected(blake3=digest, size=size))
                logger.info("blob fetched digest=%s source=%s size=%d", digest, source.name, size)
                self._stored(digest, size)
                return True
            except (DigestMismatchError, SizeMismatchError) as exc:
                logger.warning("source served wrong bytes source=%s digest=%s", source.name, digest)
                source.bad_bytes(f"wrong bytes for {digest}: {exc}")
            except NotFoundError:
                continue
            except InsufficientStorageError as exc:  # this node's disk, not the source's fault
                self._cannot_store(size, exc)
                raise
            except Exception as exc:  # any failure of one source: try the next
                logger.warning(
                    "blob fetch failed source=%s digest=%s error=%s", source.name, digest, exc
                )
        logger.error("blob not fetched from any peer or mirror digest=%s", digest)
        return False

    def _cannot_store(self, size: int, exc: InsufficientStorageError) -> None:
        """Say once that fetches wait for room (or a writable disk), not at every sweep."""
        with self._lock:
            first = self._no_room is None
            self._no_room = min(size, self._no_room or size)
        if first:
            logger.warning("blob fetches wait until this node can store them: %s", exc.message)

    def _receive(self, source: PeerBlobs, digest: Digest, size: int, owner: str | None) -> None:
        """Fetch from a peer at the wire's speed into a writer, resuming what an earlier
        attempt kept; what this one receives is kept for the next should it stop."""
        later = size > REGULAR_FILE_MAX  # SHA-256 after it is visible (see sha256fill)
        partial = self._partials.take(digest.hex) or Partial(
            self._uploads.writer(size, sha256=not later, cache=owner is None), 0
        )

        def landed(count: int) -> None:
            if owner is not None:  # a background fetch: counted, and after live news
                self._catchup.landed(owner, count)
                self.live.wait()

        try:
            source.receive(digest, size, partial, landed)
        except StreamFailedError as exc:
            if isinstance(exc.cause, WriteFailedError):
                raise exc.cause.__cause__ or exc.cause from None  # the writer aborted itself
            if exc.prefix == 0:
                partial.writer.abort()
                raise exc.cause from None
            partial.received = exc.prefix
            self._partials.keep(digest.hex, partial)
            logger.info("blob fetch stopped, kept for resuming digest=%s at=%d", digest, exc.prefix)
            raise exc.cause from None
        self._uploads.complete(partial.writer, Expected(blake3=digest, size=size))
        if later:
            self._sha256.add(digest)
