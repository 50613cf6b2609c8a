"""Writing a fresh large file: buffered (as `curl -o` writes) or with O_DIRECT, whichever
this disk writes faster, learned per device while writing."""

from __future__ import annotations

import fcntl
import os
import threading
import time

ALIGN = 4096  # O_DIRECT's alignment of offsets, lengths and memory
TRIAL_EVERY = 8  # files: the first slot of one in this many goes the other way, as a trial
HEADROOM = 1.5  # O_DIRECT must write this much faster than buffered to be chosen


class WriteChoice:
    """How one disk gets a fresh large file written: buffered (as `curl -o` writes), or
    O_DIRECT where that is clearly faster, learned while writing.

    Every slot's write is timed. Buffered writes win where the page cache takes writes faster
    than the device (here: several GB/s against O_DIRECT's ~1.3); O_DIRECT wins once the
    kernel throttles dirty pages, or on a VM whose fresh pages come slowly (buffered 100 MB/s
    was seen), and is taken when HEADROOM times faster (single writes' times swing on a busy
    machine). A file is written one way: mixing the two within a file cost a quarter of the
    rate here. Only its first slot may go the other way, as a trial, while that way's rate is
    unknown and in one file of TRIAL_EVERY, so both rates stay known. One choice per device,
    kept for the process.
    """

    def __init__(self) -> None:
        self._rates: dict[bool, float] = {}  # direct? -> bytes/s, recent writes weigh most
        self._files = 0
        self._lock = threading.Lock()

    def plan(self) -> tuple[bool, bool]:
        """How the next file is written: (O_DIRECT for its first slot?, for the rest?)."""
        with self._lock:
            self._files += 1
            direct, buffered = self._rates.get(True), self._rates.get(False)
            if direct == 0.0:  # this filesystem refuses O_DIRECT
                return False, False
            best = direct is not None and buffered is not None and direct > buffered * HEADROOM
            if direct is None or buffered is None or self._files % TRIAL_EVERY == 0:
                return not best, best
            return best, best

    def record(self, direct: bool, count: int, seconds: float) -> None:
        rate = count / max(seconds, 1e-9)
        with self._lock:
            before = self._rates.get(direct)
            self._rates[direct] = rate if not before else (before + rate) / 2

    def rates(self) -> dict[bool, float]:
        """The recent write rate (bytes/s) of each way tried: O_DIRECT (True), buffered."""
        with self._lock:
            return dict(self._rates)

    def no_direct(self) -> None:
        with self._lock:
            self._rates[True] = 0.0


_choices: dict[int, WriteChoice] = {}
_choices_lock = threading.Lock()


def write_choice(fd: int) -> WriteChoice:
    """The WriteChoice of the device holding `fd`'s file."""
    device = os.fstat(fd).st_dev
    with _choices_lock:
        return _choices.setdefault(device, WriteChoice())


class Writes:
    """One file's writes at their offsets, each the way `WriteChoice` says, and timed."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._choice = write_choice(fd)
        self._first, self._rest = self._choice.plan()
        self._direct = False  # is O_DIRECT on for fd now

    def write(self, view: memoryview, offset: int) -> None:
        want = self._first if offset == 0 else self._rest
        if want != self._direct:
            self._direct = _set_direct(self._fd, want)
            if want and not self._direct:
                self._choice.no_direct()
        used, started = self._direct, time.perf_counter()
        self._direct = _write(self._fd, view, offset, self._direct)
        self._choice.record(used, len(view), time.perf_counter() - started)

    def close(self) -> None:
        _set_direct(self._fd, False)


def _write(fd: int, view: memoryview, offset: int, direct: bool) -> bool:
    """Write at `offset`; the unaligned tail of the file goes without O_DIRECT."""
    aligned = len(view) - len(view) % ALIGN if direct else 0
    if aligned:
        try:
            pwrite_all(fd, view[:aligned], offset)
        except OSError:  # the filesystem refused O_DIRECT after all
            direct = _set_direct(fd, False)
            aligned = 0
    if aligned < len(view):
        if direct:
            direct = _set_direct(fd, False)
        pwrite_all(fd, view[aligned:], offset + aligned)
    return direct


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (pwrite may write less than asked)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _set_direct(fd: int, on: bool) -> bool:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except OSError:
        return False
    return on
