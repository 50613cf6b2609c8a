"""SHA-256 for blobs an eager fetch stored without it, computed after they are visible.

BLAKE3 verifies a fetched blob before it is visible; SHA-256 only names it for Git LFS
lookups (an upload skipping bytes stored already, a commit naming an LFS oid). Hashed while
fetching, it capped catch-up at a third of the wire's speed here (~0.3 GB/s against
BLAKE3's ~1.8 on a loaded core), so large blobs are hashed again afterwards, on one thread
at a lower CPU priority, and only once no fetch runs (or after waiting MAX_WAIT for that): it
takes what the fetches leave. Until then the blob reads as one not stored to an LFS lookup
(the client sends it again; stored once). The queue is in memory: the thread starts with the
node and first queues again up to SWEEP blobs of its commits still recorded without SHA-256
(a restart came before their turn); any beyond get theirs at the next start.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from registry.domain.digest import Digest
from registry.service.priority import lower_priority
from registry.service.uploads import UploadService

logger = logging.getLogger(__name__)
MAX_WAIT = 60.0  # seconds a blob's SHA-256 waits for the fetches to pause
PAUSE = 0.2  # seconds between looks at whether they did
SWEEP = 10_000  # blobs lacking SHA-256 queued again at start, at most


class Sha256Fill:
    def __init__(self, uploads: UploadService, busy: Callable[[], bool]) -> None:
        self._uploads = uploads
        self._busy = busy  # are fetches running?
        self._queue: queue.SimpleQueue[Digest | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread; it first sweeps for blobs a restart left without SHA-256."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sha256-fill", daemon=True)
                self._thread.start()

    def add(self, digest: Digest) -> None:
        self._queue.put(digest)

    def stop(self) -> None:
        self._queue.put(None)

    @property
    def threads(self) -> list[threading.Thread]:
        return [] if self._thread is None else [self._thread]

    def _run(self) -> None:
        lower_priority()  # as the fetches
        self._sweep()
        while (digest := self._queue.get()) is not None:
            deadline = time.monotonic() + MAX_WAIT
            while self._busy() and time.monotonic() < deadline:
                time.sleep(PAUSE)
            try:
                self._uploads.fill_sha256(digest)
            except Exception as exc:  # the next start's sweep (or upload of the bytes) fills it
                logger.warning("sha256 of a fetched blob failed digest=%s error=%s", digest, exc)

    def _sweep(self) -> None:
        try:
            left = self._uploads.lacking_sha256(SWEEP)
        except Exception as exc:  # the next start sweeps again
            logger.warning("sha256 sweep failed error=%s", exc)
            return
        if left:
            logger.info("sha256 sweep queued blobs=%d", len(left))
        for digest in left:
            self._queue.put(digest)
