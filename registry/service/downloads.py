"""Download counts: counted in memory on the download path, written in the background.

A download is a GET of a file from its first byte. Counting it is a dict increment under a
lock; a flush thread adds the counts to the repos every few seconds, so downloads never
wait on the database. A crash loses at most one interval of counts, never a file.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from registry.metadata.db import Database

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
        with self._db.write() as tx:
            tx.repos.add_downloads(pending)
        self.version += 1
        return sum(pending.values())
