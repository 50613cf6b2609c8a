"""Blobs as files on a local filesystem (layout in the package docstring)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from registry.domain.digest import Digest, Hasher, Hashes
from registry.domain.errors import BlobNotFoundError
from registry.storage import BlobInfo, Expected

logger = logging.getLogger(__name__)
READ_CHUNK = 4 * 1024 * 1024


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / "blake3"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)

    def clear_uploads(self) -> int:
        """Remove leftovers of uploads a crash interrupted; called once at startup."""
        removed = 0
        for leftover in self._uploads.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def path_of(self, digest: Digest) -> Path:
        return self._blobs / digest.hex[:2] / digest.hex

    def stat(self, digest: Digest) -> BlobInfo | None:
        try:
            return BlobInfo(digest, self.path_of(digest).stat().st_size)
        except FileNotFoundError:
            return None

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = self.path_of(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"Blob {digest} not found") from None
        return _read_range(handle, start, end)

    def local_path(self, digest: Digest) -> Path | None:
        path = self.path_of(digest)
        return path if path.exists() else None

    def writer(self, size_hint: int | None = None) -> LocalBlobWriter:
        return LocalBlobWriter(self, self._uploads / uuid.uuid4().hex, size_hint)

    def delete(self, digest: Digest) -> None:
        self.path_of(digest).unlink(missing_ok=True)

    def iter_digests(self) -> Iterator[Digest]:
        for shard in sorted(self._blobs.iterdir()):
            for blob in sorted(shard.iterdir()):
                yield Digest(blob.name)

    def publish(self, temp: Path, digest: Digest) -> None:
        final = self.path_of(digest)
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # same bytes uploaded twice are stored once
            temp.unlink()
            return
        os.replace(temp, final)
        _fsync_dir(final.parent)


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore, temp: Path, size_hint: int | None) -> None:
        self._store = store
        self._temp = temp
        self._fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._hasher = Hasher(size_hint)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def commit(self, expected: Expected) -> Hashes:
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            hashes = self._hasher.result()
            expected.check(hashes)
            self._store.publish(self._temp, hashes.blake3)
            return hashes
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._temp.unlink(missing_ok=True)


def _read_range(handle: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            chunk = handle.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
