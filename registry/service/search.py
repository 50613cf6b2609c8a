"""Search that never hides an upload: the index answers for what it has caught up with, and a
direct query over the change log's newer entries answers for the rest.

Theory of operation: the index reflects the change log up to its cursor. The repos named by
entries past the cursor are *pending*: their index rows are missing or stale, so their
documents are built from the truth (the repo, main branch, card) and matched in memory by the
same predicate the index evaluates (`registry.domain.search.matches`). The pending set is kept
incrementally: each search reads only the entries written since the previous one. Results are
the index's matches minus pending repos, merged with the pending repos' matches, so a search
returns every matching repo whether the indexer is current, behind, stopped or crashed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from registry.domain.access import Principal, may_read
from registry.domain.search import SearchDoc, SearchQuery, matches, sort_key
from registry.metadata.db import Database
from registry.service.indexer import DocBuilder, Indexer, IndexPosition
from registry.service.reads import ReadService
from registry.service.scanning import ScanService


@dataclass(frozen=True)
class IndexLag:
    indexed_serial: int
    head_serial: int
    pending_repos: int
    behind_seconds: float

    @property
    def behind_entries(self) -> int:
        return self.head_serial - self.indexed_serial


@dataclass(frozen=True)
class SearchHit:
    doc: SearchDoc
    indexed: bool  # False: found by the direct query (the index has not caught up yet)
    scan: str | None  # worst verdict over the repo's scanned files; None if none are


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    lag: IndexLag
    more: bool


class PendingDocs:
    """Documents of the repos past the index cursor, kept current from the change log."""

    def __init__(self, db: Database, builder: DocBuilder) -> None:
        self._db = db
        self._builder = builder
        self._lock = threading.Lock()
        self._covered: int | None = None  # change-log serial read up to
        self._last: dict[str, int] = {}  # repo key -> serial of its newest entry
        self._docs: dict[str, SearchDoc | None] = {}  # None: deleted

    def current(self, position: IndexPosition) -> list[SearchDoc]:
        with self._lock:
            if self._covered is None or position.cursor > self._covered:
                self._covered = max(position.cursor, self._covered or 0)
            if position.head > self._covered:
                self._read_entries(self._covered, position.head)
            for key in [k for k, serial in self._last.items() if serial <= position.cursor]:
                del self._last[key]
                self._docs.pop(key, None)
            self._build(
                [k for k in self._last if k not in self._docs or _incomplete(self._docs[k])]
            )
            return [d for d in self._docs.values() if d is not None]

    def _read_entries(self, after: int, upto: int) -> None:
        with self._db.read() as tx:
            entries = tx.search.entries_between(after, upto)
        for serial, key in entries:
            self._last[key] = max(serial, self._last.get(key, 0))
            self._docs.pop(key, None)
        self._covered = upto

    def _build(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._db.read() as tx:
            repos = tx.search.repos(keys)
            sources = tx.search.sources(list(repos.values()))
        docs = {d.repo_id: d for d in self._builder.build(sources)}
        for key in keys:
            repo = repos.get(key)
            self._docs[key] = None if repo is None else docs.get(repo.id)


def _incomplete(doc: SearchDoc | None) -> bool:
    """A document read before its card was stored here (a replica) is read again."""
    return doc is not None and not doc.complete


class SearchService:
    def __init__(
        self,
        db: Database,
        indexer: Indexer,
        builder: DocBuilder,
        reads: ReadService,
        scans: ScanService,
    ) -> None:
        self._db = db
        self._indexer = indexer
        self._reads = reads
        self._scans = scans
        self._pending = PendingDocs(db, builder)

    def lag(self) -> IndexLag:
        position = self._indexer.position()
        return self._lag(position, len(self._pending.current(position)))

    def _lag(self, position: IndexPosition, pending: int) -> IndexLag:
        return IndexLag(position.cursor, position.head, pending, position.behind_seconds)

    def search(self, principal: Principal, query: SearchQuery) -> SearchPage:
        position = self._indexer.position()
        pending = self._pending.current(position)
        need = query.offset + query.limit + 1  # one more tells whether a next page exists
        direct = [
            d
            for d in pending
            if may_read(principal, private=d.private, namespace=d.namespace) and matches(d, query)
        ]
        direct.sort(key=lambda d: sort_key(d, query.sort), reverse=True)
        skip = {d.repo_id for d in pending}
        with self._db.read() as tx:
            indexed = tx.search.matching(principal, query, skip, need)
        found = [(d, False) for d in direct[:need]] + [(d, True) for d in indexed]
        found.sort(key=lambda pair: sort_key(pair[0], query.sort), reverse=True)
        window = found[query.offset : query.offset + query.limit]
        trees = self._reads.tree_maps({d.commit_id for d, _ in window if d.commit_id})
        scans = self._scans.worst_of([trees.get(d.commit_id or "", {}) for d, _ in window])
        hits = [
            SearchHit(d, was_indexed, scan)
            for (d, was_indexed), scan in zip(window, scans, strict=True)
        ]
        return SearchPage(
            hits, self._lag(position, len(pending)), len(found) > len(window) + query.offset
        )
