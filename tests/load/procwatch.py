"""A process seen from outside, by PID, through /proc (Linux): resident memory, open file
descriptors and threads, sampled on a thread of its own while a load runs."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the watch started
    rss: int  # bytes (VmRSS)
    fds: int
    threads: int
    cpu: float  # seconds of CPU (user + system) the process has used so far


def _status_kib(status: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/<pid>/status")
    return int(match.group(1))


def sample(pid: int, at: float = 0.0) -> Sample:
    """One look at the process; raises OSError once it has gone."""
    status = Path(f"/proc/{pid}/status").read_text()
    # After the command name (in parentheses): utime and stime are fields 14 and 15 of stat.
    ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[11:13]
    return Sample(
        at=at,
        rss=_status_kib(status, "VmRSS") * 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=_status_kib(status, "Threads"),
        cpu=sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK"),
    )


def peak_rss(pid: int) -> int:
    """The process's resident-set high-water mark since it started (VmHWM), in bytes."""
    return _status_kib(Path(f"/proc/{pid}/status").read_text(), "VmHWM") * 1024


class Watch:
    """Samples `pid` every `interval` seconds between `with` entry and exit (bounded by
    `limit` samples, which also bounds the thread's loop)."""

    def __init__(self, pid: int, interval: float = 0.25, limit: int = 20_000) -> None:
        self.pid = pid
        self.interval = interval
        self.limit = limit
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{pid}", daemon=True)
        self._started = 0.0

    def _run(self) -> None:
        while len(self.samples) < self.limit:
            try:
                self.samples.append(sample(self.pid, time.monotonic() - self._started))
            except OSError:
                return  # the process has gone; the caller notices that on its own
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Watch:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def halves(self) -> tuple[list[Sample], list[Sample]]:
        """The samples of the first and the second half of the watched time."""
        if not self.samples:
            return [], []
        middle = self.samples[-1].at / 2
        return (
            [s for s in self.samples if s.at <= middle],
            [s for s in self.samples if s.at > middle],
        )
