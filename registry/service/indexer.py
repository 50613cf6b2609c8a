"""The search indexer: a background helper that copies what repos are found by into the index.

Theory of operation: the indexer's durable queue is the change log itself. Every change to a
repo (its own or one learned from a peer) appends a log entry in the transaction that makes
it, and the indexer keeps a cursor (`index_cursor`) that it advances in the same transaction
as the index rows it wrote for those entries. A stopped, crashed or slow indexer therefore
loses nothing: on restart it continues from its cursor, and until then the entries past the
cursor name exactly the repos the index does not know yet, which search then reads directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from registry.domain.search import SearchDoc
from registry.metadata.db import Database
from registry.metadata.search import DocSource, repo_doc
from registry.metadata.tx import Tx
from registry.service.cards import Card, CardReader
from registry.service.lineage import declared_parents
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
CURSOR_KEY = "index_cursor"
# What documents hold changes now and then (2: `parent:<repo>` tags, for lineage children;
# 3: the words of the card's title and text; 4: `parent-hash:<hex>` tags, for children that
# name a parent by one of its files' hashes);
# documents an older node made are made again while the indexer is idle, a batch at a time.
DOC_FORMAT = "4"
FORMAT_KEY = "index_format"
REFORMAT_KEY = "index_reformat_after"  # the last repo id whose document was made again
MAX_BODY_CHARS = 16_000  # of a card's text, searched by its words
MAX_WEIGHT_FILES = 8  # safetensors headers read per repo for parameters and training metadata
INCOMPLETE_BATCH = 100  # documents re-read per idle pass
PARENT_TAG = "parent:"  # a tag naming a declared parent repo: children are found by it
PARENT_HASH_TAG = "parent-hash:"  # a tag naming a declared parent file by its hash
_HASH_LENGTHS = (8, 10, 12, 64)  # AutoV1, AutoV2, AutoV3; BLAKE3 or SHA-256 (lookup's forms)


def parent_tag(full_name: str) -> str:
    """The tag a repo's children carry: `parent:<namespace>/<name>`."""
    return PARENT_TAG + full_name


def parent_hash_tag(value: str) -> str | None:
    """The tag a child naming a parent file by `value` carries: `parent-hash:<hex>`, the hex in
    lower case without its `sha256:`-style prefix; None for what is no hash lookup takes."""
    hex_part = value.strip().lower().rpartition(":")[2]
    if len(hex_part) not in _HASH_LENGTHS or hex_part.strip("0123456789abcdef"):
        return None
    return PARENT_HASH_TAG + hex_part


def parent_tags(card: Card) -> tuple[str, ...]:
    """Tags naming the parents a card declares: the repos (lineage `repo:` entries and
    `base_model:` names of the form ns/name) and the file hashes (lineage `hash:` entries),
    so a repo's children are one indexed query away instead of a read of every card."""
    parents = declared_parents(card)
    names = [parent_tag(p.repo) for p in parents if p.repo and _repo_shaped(p.repo)]
    hashes = [parent_hash_tag(p.hash) for p in parents if p.hash]
    return tuple(dict.fromkeys([*names, *(h for h in hashes if h)]))


def _repo_shaped(name: str) -> bool:
    namespace, _, rest = name.partition("/")
    return bool(namespace and rest and "/" not in rest)


class DocBuilder:
    """Builds search documents from the truth: a repo, its main branch, card and weights."""

    def __init__(self, blobs: BlobStore, cards: CardReader) -> None:
        self._blobs = blobs
        self._cards = cards

    def build(self, sources: Sequence[DocSource]) -> list[SearchDoc]:
        return [self._doc(source) for source in sources]

    def _doc(self, source: DocSource) -> SearchDoc:
        base = repo_doc(source.repo, source.head)
        if source.head is None:
            return base.with_words()
        readme = source.readme.entry if source.readme else None
        card = self._cards.card(source.head, readme)
        files = [f.entry for f in source.weights[:MAX_WEIGHT_FILES]]
        weights = self._cards.weights(source.head, files)
        training = weights.training if weights else {}
        return replace(
            base,
            kind=card.kind,
            base_model=card.base_model or training.get("ss_base_model_version"),
            license=card.license,
            description=card.description,
            body=card.body[:MAX_BODY_CHARS],
            tags=tuple(dict.fromkeys((*card.tags, *parent_tags(card)))),
            trigger_words=tuple(card.trigger_words),
            suggested_tags=tuple(weights.suggested_tags if weights else ()),
            complete=readme is None or self._blobs.stat(readme.blake3) is not None,
        ).with_words()


@dataclass(frozen=True)
class IndexPosition:
    cursor: int  # last change-log serial the index reflects
    head: int  # the change log's head serial
    oldest_pending_ms: int | None  # when the oldest entry not indexed yet was written

    @property
    def behind_entries(self) -> int:
        return self.head - self.cursor

    @property
    def behind_seconds(self) -> float:
        if self.oldest_pending_ms is None:
            return 0.0
        return round(max(0.0, time.time() - self.oldest_pending_ms / 1000), 3)


class Indexer:
    def __init__(self, db: Database, builder: DocBuilder) -> None:
        self._db = db
        self._builder = builder

    def position(self) -> IndexPosition:
        with self._db.read() as tx:
            cursor = _cursor(tx)
            first = tx.search.first_written_after(cursor)
            head = tx.changes.head()
        return IndexPosition(cursor, head, first)

    def run_once(self, batch: int = 500) -> int:
        """Index the repos of the next `batch` log entries; returns how many were consumed."""
        with self._db.read() as tx:
            cursor = _cursor(tx)
            changes = tx.search.next_entries(cursor, batch)
            keys = {key for _, key in changes}
            repos = tx.search.repos(keys)
            # Idle: documents made before their card was stored here are made again.
            todo = list(repos.values()) if changes else tx.search.incomplete(INCOMPLETE_BATCH)
            sources = tx.search.sources(todo)
        docs = self._builder.build(sources)  # file reads: outside the transaction
        if not changes:
            self._refresh([d for d in docs if d.complete])
            self._reformat()
            return 0
        with self._db.write() as tx:
            if _cursor(tx) != cursor:
                return 0  # another process indexed these entries meanwhile
            tx.search.put(docs)
            if len(repos) < len(keys):
                tx.search.drop_orphans()
            tx.values.put(CURSOR_KEY, str(changes[-1][0]))
        return len(changes)

    def _refresh(self, docs: list[SearchDoc]) -> None:
        """Store documents re-read now that their card is stored here (a replica's lazy
        blobs); the cursor does not move."""
        if docs:
            with self._db.write() as tx:
                tx.search.put(docs)

    def _reformat(self) -> None:
        """Make again, a batch per idle pass, documents made in an older DOC_FORMAT."""
        with self._db.read() as tx:
            if tx.values.get(FORMAT_KEY) == DOC_FORMAT:
                return
            after = int(tx.values.get(REFORMAT_KEY) or 0)
            todo = tx.search.indexed_after(after, INCOMPLETE_BATCH)
            sources = tx.search.sources(todo)
        docs = self._builder.build(sources)
        with self._db.write() as tx:
            tx.search.put(docs)
            if todo:
                tx.values.put(REFORMAT_KEY, str(todo[-1].id))
            else:
                tx.values.put(FORMAT_KEY, DOC_FORMAT)
                logger.info("search index documents made again in format %s", DOC_FORMAT)


def _cursor(tx: Tx) -> int:
    return int(tx.values.get(CURSOR_KEY) or 0)
