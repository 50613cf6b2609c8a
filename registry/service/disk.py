"""The data dir's disk: how much room it has left, and whether it takes writes.

Theory of operation: an upload declares its size (the LFS batch and PUT, a Xet xorb's
Content-Length), and the node refuses it at once, with 507 InsufficientStorage, when storing
it would leave less than `reserve` bytes free on the disk that holds the blobs: the reserve is
kept for the database and the change log, so commits and metadata go on working on a nearly
full disk. A write that fills the disk anyway (uploads racing for the last bytes) fails with
ENOSPC in the blob writer, which removes its partial file and answers 507 too
(`registry.storage.local`). With blobs in S3, only the reserve's state is reported.

`state()` is what health, status and metrics show: `ok`, `low` (under 10 % or twice the
reserve free), `full` (the reserve reached: uploads refused), or `unwritable` (the data dir is
gone, read-only or not writable).
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from registry.domain.errors import DataDirUnavailableError, InsufficientStorageError

LOW_FRACTION = 0.10
PROBE = ".write-probe"  # a file created and removed at once, to learn the disk takes writes


@dataclass(frozen=True)
class DiskState:
    path: str
    free: int
    total: int
    reserve: int
    state: str  # ok | low | full | unwritable
    problem: str | None  # what an operator should read, when not ok

    @property
    def writable(self) -> bool:
        return self.state not in ("full", "unwritable")


class DiskSpace:
    def __init__(self, data_dir: Path, blob_dir: Path | None, reserve: int) -> None:
        """`blob_dir`: where the blob store stages and keeps blobs (None: blobs are in S3,
        and uploads need no room here)."""
        self._data_dir = data_dir
        self._blob_dir = blob_dir
        self._path = blob_dir or data_dir  # the disk uploads fill
        self._reserve = reserve

    def _unwritable(self) -> str | None:
        """Why the data dir or the blob store's staging dir cannot be written, if so."""
        probed = [self._data_dir, *([self._blob_dir] if self._blob_dir is not None else [])]
        staging = [self._blob_dir / "uploads"] if self._blob_dir is not None else []
        for path in [*probed, *staging]:
            if not path.is_dir():
                return f"{path} is gone (a disk unmounted or removed?)"
            # access() answers for a read-only mount too (EROFS), even for root.
            why = "read-only or permissions" if not os.access(path, os.W_OK) else None
            if why is None and path in probed:
                why = _cannot_create(path)
            if why is not None:
                return f"{path} is not writable ({why})"
        return None

    def state(self) -> DiskState:
        path, reserve = str(self._path), self._reserve
        try:
            usage = shutil.disk_usage(self._path)
        except OSError as exc:
            problem = f"the data dir {path} cannot be read: {exc.strerror or exc}"
            return DiskState(path, 0, 0, reserve, "unwritable", problem)
        free, total = usage.free, usage.total
        unwritable = self._unwritable()
        if unwritable is not None:
            return DiskState(path, free, total, reserve, "unwritable", unwritable)
        if free <= reserve:
            problem = (
                f"the disk of {path} is full: {free} bytes free, {reserve} kept for the "
                "database; uploads are refused"
            )
            return DiskState(path, free, total, reserve, "full", problem)
        if free < max(2 * reserve, total * LOW_FRACTION):
            problem = f"the disk of {path} is low: {free} of {total} bytes free"
            return DiskState(path, free, total, reserve, "low", problem)
        return DiskState(path, free, total, reserve, "ok", None)

    def require_room(self, size: int, what: str) -> None:
        """Refuse an upload of `size` bytes that would leave less than the reserve free.

        Raises:
            InsufficientStorageError: it does not fit (nothing was written).
            DataDirUnavailableError: the data dir or the blob store's is gone or read-only.
        """
        if self._blob_dir is None:
            return
        disk = self.state()
        if disk.state == "unwritable":
            raise DataDirUnavailableError(f"This node cannot store uploads now: {disk.problem}")
        if size > disk.free - self._reserve:
            raise InsufficientStorageError(
                f"Not enough space on this node for {what} ({size} bytes): the disk of its "
                f"data dir ({self._path}) has {disk.free} bytes free and keeps {self._reserve} "
                "for its database",
                detail={"size": size, "free": disk.free, "reserve": self._reserve},
            )


def _cannot_write_reason(exc: OSError) -> str | None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return None  # full, not unwritable: the free space tells that
    return exc.strerror or str(exc)


def _cannot_create(folder: Path) -> str | None:
    """Why no file can be created in `folder`, if so. access() is not enough: a disk the
    kernel stopped after an error (ext4 with errors=remount-ro, on Linux 6.x an "emergency"
    read-only state) raises EROFS on every write while access() and statvfs() say writable."""
    probe = folder / f"{PROBE}-{os.getpid()}-{threading.get_native_id()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    except OSError as exc:
        return _cannot_write_reason(exc)
    os.close(fd)
    try:
        probe.unlink()
    except OSError as exc:
        return _cannot_write_reason(exc)
    return None
