"""A load run with the node process watched from outside: a warm-up at the same concurrency
(pools, threads and caches reach their working size), a "before" look once the node is idle, the
load under a /proc watch, then an "after" look once it is idle again.

What is open after the load is compared with what was open after the warm-up, not with a cold
process: a node legitimately keeps pooled database connections and worker threads around.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from tests.load import procwatch
from tests.load.fixture import Fixture
from tests.load.procwatch import Sample
from tests.load.runner import Plan, Report, run

STABLE_FOR = 1.0  # seconds the descriptor count must hold still to count as settled
SETTLE_TIMEOUT = 20.0
IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Measured:
    report: Report
    warmup: Report
    before: Sample  # after the warm-up, settled
    after: Sample  # after the load, settled (or at the settle deadline)
    samples: list[Sample]  # during the load
    halves: tuple[list[Sample], list[Sample]]
    open_before: Counter[str]  # what the descriptors point at (see fd_targets)
    open_after: Counter[str]

    @property
    def peak_rss(self) -> int:
        return max([s.rss for s in self.samples] + [self.before.rss, self.after.rss])

    @property
    def peak_threads(self) -> int:
        return max(s.threads for s in [*self.samples, self.before, self.after])

    @property
    def cores(self) -> float:
        """CPU seconds the process used per second of the load."""
        first, last = self.samples[0], self.samples[-1]
        return (last.cpu - first.cpu) / max(last.at - first.at, 1e-9)

    @property
    def opened(self) -> Counter[str]:
        """Descriptors open after the load and not before it, by what they point at."""
        return self.open_after - self.open_before

    def median_rss(self, half: int) -> float:
        """The median RSS of the first (0) or second (1) half of the load."""
        samples = self.halves[half]
        return statistics.median(s.rss for s in samples) if samples else 0.0


def fd_targets(pid: int) -> Counter[str]:
    """What the process's descriptors point at (sockets and pipes by kind, files by path)."""
    targets: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:  # closed meanwhile
            continue
        targets[
            target.split(":")[0] + ":" if target.startswith(("socket:", "pipe:")) else target
        ] += 1
    return targets


def settled(pid: int, timeout: float = SETTLE_TIMEOUT) -> Sample:
    """Wait (bounded) until the descriptor count holds still for STABLE_FOR seconds."""
    deadline = time.monotonic() + timeout
    last = procwatch.sample(pid)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = procwatch.sample(pid)
        if now.fds != last.fds:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= STABLE_FOR:
            return now
    return procwatch.sample(pid)


def _idle(http: httpx.Client, fixture: Fixture) -> bool:
    info = http.get(f"/api/models/{fixture.upload_repo}")
    status = http.get("/v1/search/status")
    if info.status_code != 200 or status.status_code != 200:
        return False
    scans_done = info.json().get("securityRepoStatus", {}).get("scansDone") is True
    return scans_done and status.json().get("behind_entries") == 0


def wait_idle(base_url: str, token: str, fixture: Fixture, timeout: float = IDLE_TIMEOUT) -> None:
    """Wait (bounded) until the node's background work on what the load wrote is done: every
    uploaded file scanned, the search index caught up. Raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as http:
        while not _idle(http, fixture):
            if time.monotonic() > deadline:
                raise TimeoutError(f"background work still running after {timeout:.0f}s")
            time.sleep(0.25)


def measure_load(
    pid: int, base_url: str, token: str, fixture: Fixture, plan: Plan, warmup_seconds: float
) -> Measured:
    """Warm up, look, load under watch, look again (see the module docstring)."""
    warmup = run(
        base_url, token, fixture, replace(plan, seconds=warmup_seconds, seed=plan.seed + 1)
    )
    wait_idle(base_url, token, fixture)
    before, open_before = settled(pid), fd_targets(pid)
    with procwatch.Watch(pid) as watch:
        report = run(base_url, token, fixture, plan)
    wait_idle(base_url, token, fixture)
    after = settled(pid)
    return Measured(
        report=report,
        warmup=warmup,
        before=before,
        after=after,
        samples=watch.samples,
        halves=watch.halves(),
        open_before=open_before,
        open_after=fd_targets(pid),
    )
