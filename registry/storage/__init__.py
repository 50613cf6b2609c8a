"""Blob storage: immutable bytes keyed by BLAKE3.

Layout of the local backend under its root directory::

    blobs/blake3/<hex[:2]>/<hex>   complete, verified blobs (never modified after rename)
    uploads/<uuid>                 uploads in progress; never served, removed on abort/startup
                                   (and by `modelyard gc` once idle for its grace period)
    quarantine/<hex>               bytes a scrub found not to hash to <hex>, set aside for an
                                   operator to inspect; never served, dropped once repaired

A blob becomes visible only by an atomic rename after its hashes and size were verified and
the file was fsynced, so a crash at any point leaves either no blob or the whole blob.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from registry.domain.digest import Digest, Hashes
from registry.domain.errors import BlobNotFoundError, DigestMismatchError, SizeMismatchError


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    modified: float | None = None  # when it was stored (Unix seconds), where the store says


@dataclass(frozen=True)
class Expected:
    """What the uploader declared; every field given is checked before the blob is visible."""

    blake3: Digest | None = None
    sha256: str | None = None
    size: int | None = None

    def check(self, got: Hashes) -> None:
        if self.size is not None and got.size != self.size:
            raise SizeMismatchError(
                f"Received {got.size} bytes, expected {self.size}",
                detail={"expected": self.size, "received": got.size},
            )
        if self.blake3 is not None and got.blake3 != self.blake3:
            raise DigestMismatchError(
                f"Content hashes to {got.blake3}, expected {self.blake3}",
                detail={"expected": str(self.blake3), "received": str(got.blake3)},
            )
        if self.sha256 is not None and got.sha256 != self.sha256:
            raise DigestMismatchError(
                f"Content has sha256 {got.sha256}, expected {self.sha256}",
                detail={"expected": self.sha256, "received": got.sha256},
            )


class BlobWriter(Protocol):
    """One upload in progress: hash while writing, then commit (verify + publish) or abort."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def commit(self, expected: Expected) -> Hashes:
        """Verify against `expected` and publish; on mismatch discard and raise."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Immutable blobs keyed by BLAKE3 (layout above). Backends: `memory` (tests and
    ephemeral stores), `local` and `s3`; `registry.storage.build.build_blob_store` picks
    local or s3 from the settings."""

    def stat(self, digest: Digest) -> BlobInfo | None: ...

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes [start, end) of a blob; raises BlobNotFoundError."""
        ...

    def local_path(self, digest: Digest) -> Path | None:
        """A filesystem path to serve the blob from, if the backend has one."""
        ...

    def writer(
        self, size_hint: int | None = None, *, sha256: bool = True, cache: bool = True
    ) -> BlobWriter:
        """A new upload; `sha256=False` hashes BLAKE3 alone (`Hasher`). `cache=False`: the
        bytes are not read again soon (a background catch-up), so a store with a page cache
        writes them around it."""
        ...

    def delete(self, digest: Digest) -> None: ...

    def iter_digests(self) -> Iterator[Digest]: ...

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with its size and when it was stored (`modified` always set)."""

    def set_aside(self, digest: Digest) -> bool:
        """Move a blob's bytes out of the served layout into `quarantine/` (replacing an older
        copy there); False when there were none. The blob then reads as absent."""
        ...

    def drop_aside(self, digest: Digest) -> None:
        """Delete the set-aside copy of a blob, if there is one."""
        ...

    def download_url(self, digest: Digest) -> str | None:
        """A URL a client may GET the blob's bytes from directly, bypassing the node.

        The API redirects downloads there; the URL honours `Range` and may expire (an S3
        presigned URL). It is made without asking whether the blob is stored: stat it first.

        Returns:
            The URL, or None when the store serves nothing itself (local and memory stores:
            the node sends the bytes).
        """
        ...

    def failing(self) -> str | None:
        """Why the store's last request failed, while none has succeeded since (None: it
        answers, or it is a local or memory store, whose disk the node watches itself)."""
        ...

    def clear_uploads(self, older_than: float | None = None, *, dry_run: bool = False) -> int:
        """Remove what interrupted uploads left staged (bytes never visible as a blob).

        Args:
            older_than: remove only leftovers not written to (local) or started (S3) for
                this many seconds, so uploads in progress survive (gc). None: the node's
                default as it starts: every leftover (local), only those older than a day
                (S3, whose bucket other processes may be uploading to).
            dry_run: count what would be removed, remove nothing.

        Returns:
            How many leftovers were (or, with `dry_run`, would be) removed; 0 for a store
            that stages nothing (memory).
        """
        ...


def put(
    store: BlobStore, expected: Expected, chunks: Iterable[bytes], *, sha256: bool = True
) -> Hashes:
    """Store `chunks` as one blob, verified against `expected` before it becomes visible
    (`sha256=False`: hashed with BLAKE3 alone)."""
    writer = store.writer(expected.size, sha256=sha256)
    try:
        for chunk in chunks:
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(expected)


@contextmanager
def local_copy(store: BlobStore, digest: Digest) -> Iterator[Path | None]:
    """A filesystem path holding the blob: the store's own file, or for a store without files
    (S3) a temporary copy removed on exit; None when the blob is not stored."""
    path = store.local_path(digest)
    if path is not None:
        yield path
        return
    try:
        chunks: Iterator[bytes] | None = store.open(digest)
    except BlobNotFoundError:
        chunks = None
    if chunks is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="modelyard-blob-") as scratch:
        copy = Path(scratch) / digest.hex
        with copy.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
        yield copy
