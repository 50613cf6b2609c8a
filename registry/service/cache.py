"""In-process cache for the hot read paths (repo info, resolve HEAD).

Theory of operation: a commit and its tree never change once written, so anything keyed by a
commit id is cached until evicted (bounded LRU). Repo records and ref resolutions do change; they
are cached per *generation*, and every write transaction this process commits starts a new
generation, dropping them. When several processes share the database, a read first compares
the database's write generation with the last one seen (`follow`): another process's write
drops the same entries, and the cached responses too (they show scan verdicts and download
counts another process may have changed).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from registry.domain.digest import Digest
from registry.domain.names import RepoId
from registry.domain.records import CommitRecord, RepoRecord, TreeFile
from registry.domain.xet.types import XetHash

logger = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class ReadCache:
    def __init__(self, capacity: int = 2048) -> None:
        self.commits: Lru[str, CommitRecord] = Lru(capacity * 4)
        self.trees: Lru[str, dict[str, TreeFile]] = Lru(capacity)
        self.responses: Lru[tuple[object, ...], bytes] = Lru(capacity)
        self.repos: Lru[RepoId, RepoRecord] = Lru(capacity)
        self.revisions: Lru[tuple[int, str], str] = Lru(capacity)
        # A blob's Xet hash, when it is servable through Xet here; (None,) when not.
        self.xet_hashes: Lru[Digest, tuple[XetHash | None]] = Lru(capacity * 4)
        self.generation = 0
        self._seen = -1  # the shared database's write generation last followed

    def new_generation(self) -> None:
        """Called after every committed write: drop what a write may have changed."""
        self.generation += 1
        self.repos.clear()
        self.revisions.clear()
        self.xet_hashes.clear()

    def forget_trees(self) -> None:
        """Called after a history rewrite took files out of stored commits' trees."""
        self.trees.clear()
        self.responses.clear()
        self.new_generation()

    def follow(self, shared_generation: int) -> None:
        """Drop what another process may have changed since the last call (a history
        rewrite there may have changed stored trees too)."""
        if shared_generation != self._seen:
            self._seen = shared_generation
            self.forget_trees()


class SharedGeneration:
    """Brings a ReadCache up to date with a database that several processes write.

    Theory of operation: a request may answer from the cache once a look at the shared write
    generation that *started after the request arrived* has been followed: everything any
    process committed before then is seen. Requests on the event loop share those looks: one
    runs at a time, on a thread, and the requests that arrive meanwhile wait for the next,
    which starts the moment it ends. So the loop never blocks on the database, and one round
    trip serves every request that came in during the previous one.
    """

    def __init__(self, cache: ReadCache, read: Callable[[], int]) -> None:
        self._cache = cache
        self._read = read
        self._next: asyncio.Future[bool] | None = None  # the look not started yet
        self._running = False

    def follow(self) -> None:
        """Look now, on this thread (for callers off the event loop)."""
        self._cache.follow(self._read())

    async def followed(self) -> bool:
        """Wait for a look that starts after this call; False if it failed (the caller then
        reads through, and meets the database's error itself)."""
        look = self._next
        if look is None:
            look = self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._start()
        return await asyncio.shield(look)  # one waiter leaving cancels nothing

    def _start(self) -> None:
        assert self._next is not None
        done, self._next = self._next, None
        self._running = True
        look = asyncio.get_running_loop().run_in_executor(None, self._read)
        look.add_done_callback(lambda result: self._finish(done, result))

    def _finish(self, done: asyncio.Future[bool], look: asyncio.Future[int]) -> None:
        self._running = False
        failed = look.exception()
        if failed is None:
            self._cache.follow(look.result())
        else:
            logger.warning("could not read the shared write generation: %s", failed)
        done.set_result(failed is None)
        if self._next is not None:  # requests arrived while it ran
            self._start()
