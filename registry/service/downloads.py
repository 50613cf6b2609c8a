"""Download counts: counted in memory on the download path, written in the background.

A download is a GET of a file from its first byte. Counting it is a dict increment under a
lock; a flush thread adds the counts to the repo rows every few seconds, so downloads never
wait on the database. A crash loses at most one interval of counts, never a file.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from sqlmodel import col, update

from registry.metadata.db import Database
from registry.metadata.tables import Repo

logger = logging.getLogger(__name__)


class DownloadCounter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()
        self.version = 0  # moves with every flush: cached answers showing counts expire

    def count(self, repo_id: int) -> None:
        with self._lock:
            self._pending[repo_id] += 1

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return 0
        with self._db.write() as session:
            for repo_id, n in pending.items():
                session.execute(
                    update(Repo)
                    .where(col(Repo.id) == repo_id)
                    .values(downloads=col(Repo.downloads) + n)
                )
        self.version += 1
        return sum(pending.values())


class FlushLoop:
    def __init__(self, counter: DownloadCounter, interval: float) -> None:
        self._counter = counter
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-counts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._counter.flush()  # what was counted before a clean stop is kept

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._counter.flush()
            except Exception:  # counts stay pending only in this pass; logged
                logger.exception("flushing download counts failed")
