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

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from registry.domain.errors import DataDirUnavailableError, InsufficientStorageError

logger = logging.getLogger(__name__)
LOW_FRACTION = 0.10


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
        staging = [self._blob_dir / "uploads"] if self._blob_dir is not None else []
        for path in [self._data_dir, *staging]:
            # access() answers for a read-only mount too (EROFS), even for root.
            if not path.is_dir():
                return f"{path} is gone (a disk unmounted or removed?)"
            if not os.access(path, os.W_OK):
                return f"{path} is not writable (read-only or permissions)"
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
            logger.warning("upload refused, data dir unwritable problem=%s", disk.problem)
            raise DataDirUnavailableError(f"This node cannot store uploads now: {disk.problem}")
        if size > disk.free - self._reserve:
            logger.warning(
                "upload refused, disk full path=%s size=%d free=%d reserve=%d",
                self._path,
                size,
                disk.free,
                self._reserve,
            )
            raise InsufficientStorageError(
                f"Not enough space on this node for {what} ({size} bytes): the disk of its "
                f"data dir has {disk.free} bytes free and keeps {self._reserve} for its database",
                detail={"size": size, "free": disk.free, "reserve": self._reserve},
            )
