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
from registry.storage.writeback import WriteBehind

logger = logging.getLogger(__name__)
READ_CHUNK = 4 * 1024 * 1024
STAGE = 4 * 1024 * 1024  # O_DIRECT write unit: page-aligned, a multiple of ALIGN
ALIGN = 4096
WILLNEED_MAX = 64 * 1024 * 1024  # ranges read this small are asked of the disk in one go
DIRECT_MIN = 8 * 1024 * 1024  # smaller uploads (known size) are written on the caller's thread
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


class LocalBlobStore:
    """`direct_from`: uploads of a known size from this many bytes are written with O_DIRECT
    (default: a quarter of the machine's memory, so they do not push out the page cache)."""

    def __init__(self, root: Path, *, direct_from: int | None = None) -> None:
        self.root = root
        self.direct_from = direct_from if direct_from is not None else _memory() // 4
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
            # The whole range asked for at once: a blob evicted from (or written O_DIRECT past)
            # the page cache is read twice as fast this way as by the kernel's read-ahead.
            os.posix_fadvise(handle.fileno(), start, end - start, os.POSIX_FADV_WILLNEED)
        return _read_range(handle, start, end)

    def local_path(self, digest: Digest) -> Path | None:
        path = self.path_of(digest)
        return path if path.exists() else None

    def writer(
        self, size_hint: int | None = None, *, sha256: bool = True, cache: bool = True
    ) -> LocalBlobWriter:
        with disk_errors(self.root, "starting an upload"):
            return LocalBlobWriter(
                self, self._uploads / uuid.uuid4().hex, Hasher(size_hint, sha256=sha256), cache
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
    """Hashes and writes one upload.

    Bytes are written buffered, so the first GET after an upload is served from the page
    cache, with the kernel's writeback started window by window (`WriteBehind`): the dirty
    pages stay bounded and the fsync at commit has little left to do. An upload of a known
    size from `store.direct_from` (a quarter of memory) would only push other blobs out of the
    cache: it is staged in a page-aligned buffer and written with O_DIRECT in whole stages, the
    unaligned tail after clearing O_DIRECT (filesystems without O_DIRECT, tmpfs: buffered).
    So is one from DIRECT_MIN written with `cache=False` (a background catch-up): nobody
    reads it soon, and it costs almost no CPU. (A buffered write into pages the kernel never
    used before costs a core about 2.5 s a GiB on this project's VMs, while O_DIRECT runs at
    the disk's speed.)
    """

    def __init__(self, store: LocalBlobStore, temp: Path, hasher: Hasher, cache: bool) -> None:
        self._store = store
        self._temp = temp
        self._hasher = hasher
        size_hint = hasher.size_hint
        direct_from = max(DIRECT_MIN, store.direct_from) if cache else DIRECT_MIN
        large = size_hint is not None and size_hint >= direct_from
        self._fd, direct = _open_locked(temp, getattr(os, "O_DIRECT", 0) if large else 0)
        self._direct = bool(direct)
        self._stage = mmap.mmap(-1, STAGE) if self._direct else None
        self._staged = 0
        self._behind = WriteBehind(self._fd)
        self._written = 0
        self._threaded = size_hint is None or size_hint >= DIRECT_MIN
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
        if not self._threaded:
            self._hasher.update(data)
            self._store_bytes(data)
            return
        # Large upload: hash on this thread (and the Hasher's helper) while another one writes
        # the bytes (hashlib, blake3 and os.write all release the GIL).
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-write")
        stored = self._io.submit(self._store_bytes, data)
        try:
            self._hasher.update(data)
        finally:
            stored.result()

    def _store_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if self._stage is not None:
            self._stage_bytes(data)
            return
        _write_all(self._fd, memoryview(data))
        self._written += len(data)
        self._behind.advance(self._written)

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
    """A full, read-only or vanished disk as the registry's errors, which name the disk and
    carry no traceback (an expected fault, not a bug): whoever catches them logs one line (the
    request's error handler, a background loop)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise InsufficientStorageError(
                f"The disk holding this node's data ({root}) is full ({what}); "
                "nothing was stored, try again once space is freed"
            ) from None
        if exc.errno in _UNWRITABLE:
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


def _memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # unknown: as if 16 GiB
        return 16 << 30


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
