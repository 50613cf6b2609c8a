"""Background blob fetches, taken round-robin across peers with a cap per peer, so a peer's
long catch-up neither fills every worker nor keeps another peer's blobs waiting behind it.
(Fetches a client or a scrub waits for run beside these, on their own workers.) They run at
a low CPU priority, and step aside while live news is applied (`LiveFirst`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from registry.service.priority import lower_priority

Task = Callable[[], bool]


class FairQueue:
    def __init__(self, workers: int, per_key: int) -> None:
        self._per_key = per_key
        self._queues: dict[str, deque[tuple[Task, Future[bool]]]] = {}
        self._running: dict[str, int] = {}
        self._order: deque[str] = deque()  # keys with work, in turn
        self._changed = threading.Condition()
        self._stopped = False
        self.threads = [
            threading.Thread(target=self._work, name=f"blob-fetch-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, key: str, task: Task) -> Future[bool]:
        future: Future[bool] = Future()
        with self._changed:
            if key not in self._queues:
                self._queues[key] = deque()
                self._order.append(key)
            self._queues[key].append((task, future))
            self._changed.notify()
        return future

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            queued = [item for q in self._queues.values() for item in q]
            self._queues.clear()
            self._order.clear()
            self._changed.notify_all()
        for _, future in queued:
            future.cancel()

    def _next(self) -> tuple[str, Task, Future[bool]] | None:
        """The next task of the first key in turn below its cap; it goes to the back."""
        for _ in range(len(self._order)):
            key = self._order[0]
            self._order.rotate(-1)
            if self._running.get(key, 0) < self._per_key:
                task, future = self._queues[key].popleft()
                if not self._queues[key]:
                    del self._queues[key]
                    self._order.remove(key)
                self._running[key] = self._running.get(key, 0) + 1
                return key, task, future
        return None

    def _work(self) -> None:
        # A catch-up that fills the cores takes only what requests and metadata pulls leave;
        # a fetch's range and writer threads inherit the priority.
        lower_priority()
        while True:
            with self._changed:
                taken = None
                while not self._stopped and (taken := self._next()) is None:
                    self._changed.wait()
                if taken is None:
                    return
            key, task, future = taken
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(task())
                except BaseException as exc:  # the caller sees it on the future
                    future.set_exception(exc)
            with self._changed:
                self._running[key] -= 1
                self._changed.notify_all()


PAUSE = 0.2  # seconds a background fetch waits at most, each time, for live news to apply


class LiveFirst:
    """Live replication before catch-up: while a puller applies news (a page that reaches its
    peer's head), background fetches wait at their next slot, at most PAUSE each time. Applying
    one entry takes ~15 ms of Python; beside a fetch at disk speed it took three times as long,
    mostly waiting for the GIL and the cores."""

    def __init__(self) -> None:
        self._applying = 0
        self._changed = threading.Condition()

    @contextmanager
    def applying(self) -> Iterator[None]:
        with self._changed:
            self._applying += 1
        try:
            yield
        finally:
            with self._changed:
                self._applying -= 1
                if not self._applying:
                    self._changed.notify_all()

    def wait(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._applying, PAUSE)
