"""How large files are written: buffered with the kernel's writeback started early, or
O_DIRECT, chosen for the disk at hand.

A buffered write leaves the bytes in the page cache, so the first read after it (a node's first
GET after an upload) does not touch the disk; `WriteBehind` starts the writeback of each
window of an in-order write as soon as it is full and waits for the window before it, so the
dirty pages stay bounded and the final fsync has little left to do. `direct_is_faster` probes
a directory's disk once per process: on some VMs writing into fresh page cache is slower than
O_DIRECT, on others the disk is slower than the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import time
import uuid
from pathlib import Path

WINDOW = 16 * 1024 * 1024  # writeback is started per window of this many bytes
PROBE_BYTES = 32 * 1024 * 1024
PROBE_PIECE = 4 * 1024 * 1024
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
_probed: dict[int, bool] = {}
_probe_lock = threading.Lock()


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


def direct_is_faster(directory: Path) -> bool:
    """Does writing a fresh file in `directory` go faster with O_DIRECT than buffered (as
    `curl -o` writes)? Measured once per device and process (~2 x 32 MiB written twice);
    False where O_DIRECT is refused (tmpfs)."""
    device = os.stat(directory).st_dev
    with _probe_lock:
        if device not in _probed:
            _probed[device] = _probe(directory)
        return _probed[device]


def _probe(directory: Path) -> bool:
    direct_flag = getattr(os, "O_DIRECT", 0)
    if not direct_flag:
        return False
    piece = mmap.mmap(-1, PROBE_PIECE)  # page-aligned, as O_DIRECT needs
    piece.write(os.urandom(PROBE_PIECE))
    best = {0: float("inf"), direct_flag: float("inf")}
    try:
        for _ in range(2):
            for flag in best:
                best[flag] = min(best[flag], _timed_write(directory, piece, flag))
    except OSError:  # O_DIRECT refused, or no room for the probe: write buffered
        return False
    finally:
        piece.close()
    return best[direct_flag] < best[0]


def _timed_write(directory: Path, piece: mmap.mmap, flag: int) -> float:
    path = directory / f".write-probe-{uuid.uuid4().hex}"
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flag, 0o600)
    try:
        for _ in range(PROBE_BYTES // PROBE_PIECE):
            os.write(fd, piece)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
