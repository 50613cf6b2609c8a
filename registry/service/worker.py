"""A background worker thread for the node's helpers (scanner, indexer, download counts).

A helper's pass is a function returning how much work it did; the worker repeats it at once
while there is work, otherwise waits `interval`. A failed pass is logged and tried again next
interval: helpers only make answers slower or less rich, so they must never stop for good. A
pass failed by the machine (a full disk, a database that is down) is one log line and a pause
of a few seconds; it resumes by itself when the fault clears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from registry.domain.errors import MACHINE_FAULTS
from registry.service.leases import Leases
from registry.service.priority import lower_priority, wait_ended

logger = logging.getLogger(__name__)
FAULT_PAUSE = 5.0  # seconds a helper waits after its disk or database failed it


class Worker:
    def __init__(
        self,
        name: str,
        step: Callable[[], int],
        interval: float,
        *,
        drain: bool = True,
        on_stop: Callable[[], object] | None = None,
        leases: Leases | None = None,
        low_priority: bool = False,
    ) -> None:
        self._name = name
        self._step = step
        self._interval = interval
        self._drain = drain  # False: one pass per interval, whatever it did
        self._on_stop = on_stop
        self._leases = leases
        self._low_priority = low_priority  # take only what the node's requests leave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """Ask the thread to end after its pass, without waiting for it."""
        self._stop.set()

    def stop(self) -> None:
        self.halt()
        wait_ended([self._thread], 10)
        if self._on_stop is not None:
            self._on_stop()

    def _run(self) -> None:
        if self._low_priority:
            lower_priority()
        while not self._stop.wait(self._interval):
            try:
                if self._leases is not None and not self._leases.holds(self._name):
                    continue  # another process of this node runs it
                while self._step() and self._drain and not self._stop.is_set():
                    pass
            except MACHINE_FAULTS as exc:  # the disk or the database: one line, no traceback
                logger.warning("background pass failed worker=%s error=%s", self._name, exc)
                self._stop.wait(min(FAULT_PAUSE, self._interval * 10))
            except Exception:  # a bug: logged with its traceback; the next interval tries again
                logger.exception("background pass failed worker=%s", self._name)
