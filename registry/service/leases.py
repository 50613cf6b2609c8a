"""Which process runs a node-wide background job when several processes share one database.

Theory of operation: a job (the indexer, the scanner, the mirror pusher, one peer's puller)
runs only in the process that holds its lease row. A claim is a write transaction, and write
transactions are serialized (see metadata/db.py), so two processes never both win one lease.
The holder renews its leases every `ttl / 3` from a thread of its own, so a long pass keeps
its lease; it counts a lease as its own for only `2/3 ttl` after the last renewal, a margin
against clocks that differ between machines. A process that stops cleanly releases its
leases and another takes over at its next try; one that dies stops renewing, and another
takes over once `ttl` has passed. The jobs themselves resume from what they committed (a
cursor, an outbox row), so a job cut short is finished by the next holder, not redone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from registry.domain.clock import now_ms
from registry.domain.errors import MACHINE_FAULTS
from registry.metadata.db import Database

logger = logging.getLogger(__name__)


def holder_name(db: Database, node_id: str) -> str:
    """Who holds leases for this process. On a shared database: a name unique to the process
    (node, host, pid, a random part). An embedded database has one process, so the name is the
    node's own and a node restarted after a crash takes its jobs back at once."""
    if not db.shared:
        return node_id
    return f"{node_id}/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Leases:
    def __init__(self, db: Database, holder: str, ttl: float) -> None:
        self.holder = holder
        self._db = db
        self._ttl = ttl
        self._valid: dict[str, float] = {}  # lease -> monotonic time our claim is good until
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # a renewal never takes back a lease just released
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="leases", daemon=True)

    def holds(self, name: str) -> bool:
        """Whether this process runs job `name` now; claims the lease when it is free."""
        with self._lock:
            if self._valid.get(name, 0.0) > time.monotonic():
                return True
        return self._claim(name)

    def held(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return sorted(name for name, until in self._valid.items() if until > now)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and release every lease, so another process takes over at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            self._valid.clear()
        try:
            with self._db.write(invalidates=False) as tx:
                tx.leases.release_all(self.holder)
        except MACHINE_FAULTS as exc:  # unreleased leases run out by themselves
            logger.warning("could not release leases holder=%s error=%s", self.holder, exc)
        except Exception:  # best effort: unreleased leases run out by themselves
            logger.exception("could not release leases holder=%s", self.holder)

    def release(self, name: str) -> None:
        """Give a lease up now, so another process may take the job at once."""
        with self._claiming:
            with self._lock:
                self._valid.pop(name, None)
            with self._db.write(invalidates=False) as tx:
                tx.leases.release(name, self.holder)

    def holder_of(self, name: str) -> str | None:
        """Who holds a lease now, whatever process (None: free or run out)."""
        with self._db.read() as tx:
            lease = tx.leases.get(name)
        return lease.holder if lease is not None and lease.expires_ms > now_ms() else None

    def _claim(self, name: str, *, renewal: bool = False) -> bool:
        with self._claiming:
            if renewal and name not in self.held():
                return False  # released since the renewal round began
            return self._take(name)

    def _take(self, name: str) -> bool:
        started = time.monotonic()
        now = now_ms()
        with self._db.write(invalidates=False) as tx:
            lease = tx.leases.get(name)
            taken = lease is None or lease.holder == self.holder or lease.expires_ms <= now
            if taken:
                if lease is not None and lease.holder != self.holder:
                    logger.info("lease taken over lease=%s from=%s", name, lease.holder)
                tx.leases.put(name, self.holder, now + int(self._ttl * 1000))
        with self._lock:
            if taken:
                self._valid[name] = started + self._ttl * 2 / 3
            else:
                self._valid.pop(name, None)
        return taken

    def _renew(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            for name in self.held():
                try:
                    self._claim(name, renewal=True)
                except MACHINE_FAULTS as exc:  # the database is down: the claim lapses
                    logger.warning("lease renewal failed lease=%s error=%s", name, exc)
                except Exception:  # the claim lapses by itself; the next round tries again
                    logger.exception("lease renewal failed lease=%s", name)
