"""In-process cache for the hot read paths (repo info, resolve HEAD).

Theory of operation: a commit and its tree never change once written, so anything keyed by a
commit id is cached until evicted (bounded LRU). Repo rows and ref resolutions do change; they
are cached per *generation*, and every write transaction this process commits starts a new
generation, dropping them. When several processes share the database, a read first compares
the database's write generation with the last one seen (`follow`): another process's write
drops the same entries, and the cached responses too (they show scan verdicts and download
counts another process may have changed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from registry.domain.names import RepoId
from registry.metadata.tables import Commit, Repo, TreeRow

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
        self.commits: Lru[str, Commit] = Lru(capacity * 4)
        self.trees: Lru[str, dict[str, TreeRow]] = Lru(capacity)
        self.responses: Lru[tuple[object, ...], bytes] = Lru(capacity)
        self.repos: Lru[RepoId, Repo] = Lru(capacity)
        self.revisions: Lru[tuple[int, str], str] = Lru(capacity)
        self.generation = 0
        self._seen = -1  # the shared database's write generation last followed

    def new_generation(self) -> None:
        """Called after every committed write: drop what a write may have changed."""
        self.generation += 1
        self.repos.clear()
        self.revisions.clear()

    def follow(self, shared_generation: int) -> None:
        """Drop what another process may have changed since the last call."""
        if shared_generation != self._seen:
            self._seen = shared_generation
            self.new_generation()
            self.responses.clear()
