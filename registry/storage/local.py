"""Blobs as files on a local filesystem (layout in the package docstring)."""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from registry.domain.digest import Digest, Hasher, Hashes
from registry.domain.errors import (
    BlobNotFoundError,
    DataDirUnavailableError,
    InsufficientStorageError,
)
from registry.storage import BlobInfo, Expected

logger = logging.getLogger(__name__)
READ_CHUNK = 4 * 1024 * 1024
STAGE = 4 * 1024 * 1024  # O_DIRECT write unit: page-aligned, a multiple of ALIGN
ALIGN = 4096
WILLNEED_MAX = 64 * 1024 * 1024  # ranges read this small are asked of the disk in one go
DIRECT_MIN = 8 * 1024 * 1024  # smaller uploads (known size) use buffered writes
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / "blake3"
        self._uploads = root / "uploads"
        self._aside = root / "quarantine"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._aside.mkdir(exist_ok=True)

    def clear_uploads(self, older_than: float | None = None, *, dry_run: bool = False) -> int:
        """Remove leftovers of uploads a crash interrupted: all of them at startup, or (gc,
        while the node may be uploading) those not written to for `older_than` seconds.
        Returns how many were (or, with `dry_run`, would be) removed."""
        cutoff = None if older_than is None else time.time() - older_than
        removed = 0
        for leftover in self._uploads.iterdir():
            try:
                if cutoff is not None and leftover.stat().st_mtime >= cutoff:
                    continue
                if not _remove_unless_locked(leftover, dry_run=dry_run):
                    continue
            except FileNotFoundError:  # finished or aborted meanwhile
                continue
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
        if end is not None and 0 < end - start <= WILLNEED_MAX:
            # The whole range asked for at once: a blob written O_DIRECT is not in the page
            # cache, and the kernel's own read-ahead reads it half as fast (xorb segments).
            os.posix_fadvise(handle.fileno(), start, end - start, os.POSIX_FADV_WILLNEED)
        return _read_range(handle, start, end)

    def local_path(self, digest: Digest) -> Path | None:
        path = self.path_of(digest)
        return path if path.exists() else None

    def writer(self, size_hint: int | None = None, *, sha256: bool = True) -> LocalBlobWriter:
        with disk_errors(self.root, "starting an upload"):
            return LocalBlobWriter(
                self, self._uploads / uuid.uuid4().hex, Hasher(size_hint, sha256=sha256)
            )

    def delete(self, digest: Digest) -> None:
        self.path_of(digest).unlink(missing_ok=True)

    def iter_digests(self) -> Iterator[Digest]:
        for shard in sorted(self._blobs.iterdir()):
            for blob in sorted(shard.iterdir()):
                yield Digest(blob.name)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        for digest in self.iter_digests():
            try:
                found = self.path_of(digest).stat()
            except FileNotFoundError:  # deleted since it was listed
                continue
            yield BlobInfo(digest, found.st_size, found.st_mtime)

    def set_aside(self, digest: Digest) -> bool:
        try:
            os.replace(self.path_of(digest), self._aside / digest.hex)
        except FileNotFoundError:
            return False
        _fsync_dir(self._aside)
        return True

    def drop_aside(self, digest: Digest) -> None:
        (self._aside / digest.hex).unlink(missing_ok=True)

    def download_url(self, digest: Digest) -> str | None:  # noqa: ARG002 - served by the node
        return None

    def failing(self) -> str | None:
        return None

    def publish(self, temp: Path, digest: Digest) -> None:
        final = self.path_of(digest)
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # same bytes uploaded twice are stored once
            temp.unlink()
            return
        os.replace(temp, final)
        _fsync_dir(final.parent)


class LocalBlobWriter:
    """Hashes and writes one upload; large uploads bypass the page cache.

    Bytes are staged in a page-aligned buffer and written with O_DIRECT in whole stages: on
    the VMs we run on, writing into fresh page cache is slow and noisy, and a later fsync of
    gigabytes of dirty pages stalls. The unaligned tail is written after clearing O_DIRECT.
    Filesystems without O_DIRECT (tmpfs) get plain buffered writes.
    """

    def __init__(self, store: LocalBlobStore, temp: Path, hasher: Hasher) -> None:
        self._store = store
        self._temp = temp
        self._hasher = hasher
        size_hint = hasher.size_hint
        direct = getattr(os, "O_DIRECT", 0) if (size_hint or DIRECT_MIN) >= DIRECT_MIN else 0
        self._fd, direct = _open_locked(temp, direct)
        self._direct = bool(direct)
        self._stage = mmap.mmap(-1, STAGE) if self._direct else None
        self._staged = 0
        self._io: ThreadPoolExecutor | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hash and store the next bytes; on any failure the partial file is removed at once
        (a full disk: InsufficientStorageError; a read-only or vanished one:
        DataDirUnavailableError)."""
        try:
            with disk_errors(self._store.root, "writing an upload"):
                self._write(data)
        except BaseException:
            self.abort()
            raise

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._stage is None:
            self._hasher.update(data)
            _write_all(self._fd, memoryview(data))
            return
        # Large upload: hash on this thread while a second one copies and writes the bytes
        # (hashlib, blake3 and os.write all release the GIL).
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-write")
        stored = self._io.submit(self._stage_bytes, data)
        self._hasher.update(data)
        stored.result()

    def _stage_bytes(self, data: bytes | bytearray | memoryview) -> None:
        assert self._stage is not None
        view = memoryview(data)
        while view:
            n = min(len(view), STAGE - self._staged)
            self._stage[self._staged : self._staged + n] = view[:n]
            self._staged += n
            view = view[n:]
            if self._staged == STAGE:
                self._flush_stage()

    def _flush_stage(self) -> None:
        assert self._stage is not None
        aligned = self._staged - self._staged % ALIGN
        try:
            _write_all(self._fd, memoryview(self._stage)[:aligned])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._clear_direct()  # the filesystem refused O_DIRECT after all
            _write_all(self._fd, memoryview(self._stage)[:aligned])
        if aligned < self._staged:  # only at the very end: the unaligned tail
            self._clear_direct()
            _write_all(self._fd, memoryview(self._stage)[aligned : self._staged])
        self._staged = 0

    def _clear_direct(self) -> None:
        if self._direct:
            fcntl.fcntl(
                self._fd,
                fcntl.F_SETFL,
                fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~getattr(os, "O_DIRECT", 0),
            )
            self._direct = False

    def _close(self) -> None:
        if self._io is not None:
            self._io.shutdown()
            self._io = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        if self._stage is not None:
            stage, self._stage = self._stage, None
            try:
                stage.close()
            except BufferError:  # a view of it lives on in a failed write's traceback
                pass  # unmapped when that goes

    def commit(self, expected: Expected) -> Hashes:
        try:
            with disk_errors(self._store.root, "storing an upload"):
                if self._staged:
                    self._flush_stage()
                os.fsync(self._fd)
                hashes = self._hasher.result()
                expected.check(hashes)
                self._store.publish(self._temp, hashes.blake3)  # still locked against gc
                self._close()
            return hashes
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            self._close()
        except OSError as exc:  # closing a file on a failing disk: the file goes anyway
            logger.warning("closing an aborted upload failed path=%s error=%s", self._temp, exc)
        finally:
            try:
                self._temp.unlink(missing_ok=True)
            except OSError as exc:  # a read-only or vanished data dir: nothing to remove
                logger.warning(
                    "removing an aborted upload failed path=%s error=%s", self._temp, exc
                )


@contextmanager
def disk_errors(root: Path, what: str) -> Iterator[None]:
    """A full, read-only or vanished disk as the registry's errors, with one log line and no
    traceback (an expected fault, not a bug)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            logger.warning("disk full path=%s while=%s error=%s", root, what, exc.strerror)
            raise InsufficientStorageError(
                f"The disk holding this node's data ({root}) is full ({what}); "
                "nothing was stored, try again once space is freed"
            ) from None
        if exc.errno in _UNWRITABLE:
            logger.warning("data dir unwritable path=%s while=%s error=%s", root, what, exc)
            raise DataDirUnavailableError(
                f"This node's data dir ({root}) cannot be written ({exc.strerror}) while "
                f"{what}; nothing was stored"
            ) from None
        raise


def _open_locked(temp: Path, direct: int) -> tuple[int, int]:
    """Create an upload's file and lock it until it is published or removed, so gc in any
    process leaves it alone. Should gc take the file between its creation and the lock, it
    is gone once the lock is ours: create it again."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for _ in range(3):
        try:
            fd = os.open(temp, flags | direct, 0o644)
        except OSError:
            fd, direct = os.open(temp, flags, 0o644), 0
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, direct
        os.close(fd)
    raise OSError(errno.ENOENT, "upload file removed as it was created", str(temp))


def _remove_unless_locked(leftover: Path, *, dry_run: bool) -> bool:
    """Remove an upload leftover unless a live writer (in any process) holds its lock."""
    fd = os.open(leftover, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being written now
        if not dry_run:
            leftover.unlink()
        return True
    finally:
        os.close(fd)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


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
