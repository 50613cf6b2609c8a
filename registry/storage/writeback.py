"""Buffered writes with the kernel's writeback started early.

A buffered write leaves the bytes in the page cache, so the first read after it (a node's first
GET after an upload) does not touch the disk; `WriteBehind` starts the writeback of each
window of an in-order write as soon as it is full and waits for the window before it, so the
dirty pages stay bounded and the final fsync has little left to do.
"""

from __future__ import annotations

import ctypes
import errno
import os

WINDOW = 16 * 1024 * 1024  # writeback is started per window of this many bytes
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4


def _load_sync_file_range() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_sync_file_range = _load_sync_file_range()


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> bool:
    """Linux's sync_file_range(2); False where the system (or filesystem) has none."""
    if _sync_file_range is None:
        return False
    if _sync_file_range(fd, offset, length, flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err))


class WriteBehind:
    """Follows an in-order write of `fd`: call `advance(end)` after the bytes up to `end` are
    written. Best effort: where sync_file_range is missing it does nothing, and fsync still
    makes the file durable."""

    def __init__(self, fd: int, window: int = WINDOW) -> None:
        self._fd = fd
        self._window = window
        self._started = 0  # writeback started for [0, _started)
        self._previous: tuple[int, int] | None = None
        self._on = _sync_file_range is not None

    def advance(self, end: int) -> None:
        if not self._on or end - self._started < self._window:
            return
        span = (self._started, end - self._started)
        self._on = sync_file_range(self._fd, *span, _WRITE)
        if self._on and self._previous is not None:
            sync_file_range(self._fd, *self._previous, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
        self._previous, self._started = span, end
