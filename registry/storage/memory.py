"""Blobs in a dict: a real BlobStore for tests and ephemeral nodes, not a mock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from registry.domain.digest import Digest, Hasher, Hashes
from registry.domain.errors import BlobNotFoundError
from registry.storage import BlobInfo, Expected


class MemoryBlobStore:
    def __init__(self) -> None:
        self._blobs: dict[Digest, bytes] = {}
        self._stored_at: dict[Digest, float] = {}
        self._aside: dict[Digest, bytes] = {}
        self._lock = threading.Lock()

    def stat(self, digest: Digest) -> BlobInfo | None:
        data = self._blobs.get(digest)
        return None if data is None else BlobInfo(digest, len(data))

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = self._blobs.get(digest)
        if data is None:
            raise BlobNotFoundError(f"Blob {digest} not found")
        return iter([data[start:end]])

    def local_path(self, digest: Digest) -> Path | None:  # noqa: ARG002 - nothing on disk
        return None

    def writer(
        self,
        size_hint: int | None = None,
        *,
        sha256: bool = True,
        cache: bool = True,  # noqa: ARG002 - no page cache
    ) -> MemoryBlobWriter:
        return MemoryBlobWriter(self, Hasher(size_hint, sha256=sha256))

    def delete(self, digest: Digest) -> None:
        with self._lock:
            self._blobs.pop(digest, None)
            self._stored_at.pop(digest, None)

    def iter_digests(self) -> Iterator[Digest]:
        return iter(sorted(self._blobs))

    def iter_blobs(self) -> Iterator[BlobInfo]:
        with self._lock:
            listed = [(d, len(b), self._stored_at[d]) for d, b in sorted(self._blobs.items())]
        return (BlobInfo(d, size, at) for d, size, at in listed)

    def set_aside(self, digest: Digest) -> bool:
        with self._lock:
            data = self._blobs.pop(digest, None)
            if data is not None:
                self._aside[digest] = data
        return data is not None

    def drop_aside(self, digest: Digest) -> None:
        with self._lock:
            self._aside.pop(digest, None)

    def download_url(self, digest: Digest) -> str | None:  # noqa: ARG002 - served by the node
        return None

    def failing(self) -> str | None:
        return None

    def clear_uploads(
        self,
        older_than: float | None = None,  # noqa: ARG002 - nothing staged
        *,
        dry_run: bool = False,  # noqa: ARG002 - nothing staged
    ) -> int:
        """Uploads in progress live in their writers only: a crash leaves nothing behind."""
        return 0

    def publish(self, digest: Digest, data: bytes) -> None:
        with self._lock:
            if digest not in self._blobs:
                self._blobs[digest] = data
                self._stored_at[digest] = time.time()


class MemoryBlobWriter:
    def __init__(self, store: MemoryBlobStore, hasher: Hasher) -> None:
        self._store = store
        self._buffer = bytearray()
        self._hasher = hasher

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        self._buffer += data

    def commit(self, expected: Expected) -> Hashes:
        hashes = self._hasher.result()
        try:
            expected.check(hashes)
        finally:
            data, self._buffer = bytes(self._buffer), bytearray()
        self._store.publish(hashes.blake3, data)
        return hashes

    def abort(self) -> None:
        self._buffer = bytearray()
