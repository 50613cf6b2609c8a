"""Fetching blobs from peers: verified, one download per blob, next source on failure."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from registry.client import RegistryClient, RetryPolicy
from registry.domain.digest import Digest
from registry.domain.errors import (
    BlobUnavailableError,
    DigestMismatchError,
    NotFoundError,
    SizeMismatchError,
)
from registry.service.peers import PeerService
from registry.service.uploads import UploadService
from registry.storage import Expected

logger = logging.getLogger(__name__)


class BlobFetcher:
    def __init__(
        self, uploads: UploadService, peers: PeerService, node_id: str, workers: int
    ) -> None:
        self._uploads = uploads
        self._peers = peers
        self._node_id = node_id
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-fetch")
        self._inflight: dict[Digest, Future[bool]] = {}
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def enqueue(self, blobs: list[tuple[Digest, int]], first: str | None = None) -> None:
        for digest, size in blobs:
            self._submit(digest, size, first)

    def fetch_now(self, digest: Digest, size: int, timeout: float = 600) -> bool:
        """Fetch a blob (or join the fetch already running) and wait for it."""
        return self._submit(digest, size, None).result(timeout=timeout)

    def _submit(self, digest: Digest, size: int, first: str | None) -> Future[bool]:
        with self._lock:
            running = self._inflight.get(digest)
            if running is not None:
                return running
            future = self._pool.submit(self._fetch, digest, size, first)
            self._inflight[digest] = future
        future.add_done_callback(lambda _: self._done(digest))
        return future

    def _done(self, digest: Digest) -> None:
        with self._lock:
            self._inflight.pop(digest, None)

    def stream(self, digest: Digest, size: int) -> Iterator[bytes] | None:
        """Pull-through: stream the blob from the first source that has it while storing it.

        Returns None when a fetch of this blob is already running (wait with fetch_now). The
        stored copy is published only if its hash matches; the last chunk is held back until
        then, so a client never receives a complete response with wrong bytes.
        """
        with self._lock:
            if digest in self._inflight:
                return None
            future: Future[bool] = Future()
            self._inflight[digest] = future
        return self._stream(digest, size, future)

    def _stream(self, digest: Digest, size: int, future: Future[bool]) -> Iterator[bytes]:
        stored = False
        try:
            for peer_id, url, token in self._sources(None):
                with RegistryClient(
                    url, token=token, node_id=self._node_id, retry=RetryPolicy(attempts=1)
                ) as client:
                    try:
                        opened = client.open_blob(digest, size)
                        chunks = opened.__enter__()
                    except Exception as exc:  # this source does not have it: next one
                        logger.info("pull-through source skipped peer=%s error=%s", peer_id, exc)
                        continue
                    sent = False
                    try:
                        for chunk in self._store_while_streaming(peer_id, digest, size, chunks):
                            sent = True
                            yield chunk
                        stored = True
                        return
                    except (DigestMismatchError, SizeMismatchError):
                        if sent:
                            raise  # bytes went out already: abort the client's response
                        continue  # nothing sent yet: the next source may have good bytes
                    finally:
                        opened.__exit__(None, None, None)
            raise BlobUnavailableError(f"No peer could serve blob {digest}")
        finally:
            future.set_result(stored)
            self._done(digest)

    def _store_while_streaming(
        self, peer_id: str, digest: Digest, size: int, chunks: Iterator[bytes]
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
            self._peers.health.bad_blob(peer_id, f"wrong bytes for {digest}: {exc}")
            raise
        if held is not None:
            yield held

    def _sources(self, first: str | None) -> list[tuple[str, str, str | None]]:
        peers = self._peers.all()
        rank = {"up": 0, "unknown": 1, "degraded": 2, "down": 3}

        def order(peer_id: str) -> tuple[int, int, int]:
            health = self._peers.health.get(peer_id)
            return (0 if peer_id == first else 1, health.bad_blobs, rank[health.state])

        ordered = sorted(peers, key=lambda p: order(p.id))
        return [(p.id, p.url, p.token) for p in ordered]

    def _fetch(self, digest: Digest, size: int, first: str | None) -> bool:
        if self._uploads.stored(digest) is not None:
            return True
        for peer_id, url, token in self._sources(first):
            try:
                with (
                    RegistryClient(
                        url, token=token, node_id=self._node_id, retry=RetryPolicy(attempts=2)
                    ) as client,
                    client.open_blob(digest, size) as chunks,
                ):
                    self._uploads.ingest(chunks, Expected(blake3=digest, size=size))
                logger.info("blob fetched digest=%s peer=%s size=%d", digest, peer_id, size)
                return True
            except (DigestMismatchError, SizeMismatchError) as exc:
                logger.warning("peer served wrong bytes peer=%s digest=%s", peer_id, digest)
                self._peers.health.bad_blob(peer_id, f"wrong bytes for {digest}: {exc}")
            except NotFoundError:
                continue
            except Exception as exc:  # any failure of one source: try the next
                logger.warning("blob fetch failed peer=%s digest=%s error=%s", peer_id, digest, exc)
        logger.error("blob not fetched from any peer digest=%s", digest)
        return False
