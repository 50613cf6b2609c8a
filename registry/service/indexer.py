"""The search indexer: a background helper that copies what repos are found by into the index.

Theory of operation: the indexer's durable queue is the change log itself. Every change to a
repo (its own or one learned from a peer) appends a log entry in the transaction that makes
it, and the indexer keeps a cursor (`index_cursor`) that it advances in the same transaction
as the index rows it wrote for those entries. A stopped, crashed or slow indexer therefore
loses nothing: on restart it continues from its cursor, and until then the entries past the
cursor name exactly the repos the index does not know yet, which search then reads directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import delete, tuple_
from sqlmodel import Session, col, select

from registry.domain.clock import now_ms
from registry.domain.commit import TreeEntry
from registry.domain.search import SearchDoc, normalize_key
from registry.metadata.commits import tree_file
from registry.metadata.db import Database
from registry.metadata.fulltext import FullText
from registry.metadata.repos import record_of
from registry.metadata.tables import Change, NodeState, Ref, Repo, SearchEntry, SearchTag, TreeRow
from registry.service.cards import CardReader
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
CURSOR_KEY = "index_cursor"
CHUNK = 400  # rows per IN (...) query: well under every database's bind-parameter limit
MAX_WEIGHT_FILES = 8  # safetensors headers read per repo for parameters and training metadata


def rows_by_key(session: Session, keys: Iterable[str]) -> dict[str, Repo]:
    """Repo rows for change-log repo keys (`model/alice/m1`); deleted repos are absent."""
    wanted = [tuple(k.split("/", 2)) for k in keys if k.count("/") >= 2]
    found: dict[str, Repo] = {}
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        where = tuple_(col(Repo.type), col(Repo.namespace), col(Repo.name)).in_(part)
        for row in session.exec(select(Repo).where(where)).all():
            found[record_of(row).key] = row
    return found


def repo_doc(row: Repo, commit_id: str | None) -> SearchDoc:
    """What a search document takes from the repo row itself (the rest is card and files)."""
    assert row.id is not None
    return SearchDoc(
        repo_id=row.id,
        repo_type=row.type,
        namespace=row.namespace,
        name=row.name,
        private=row.private,
        updated_ms=row.updated_ms,
        created_ms=row.created_ms,
        downloads=row.downloads,
        commit_id=commit_id,
    )


class DocBuilder:
    """Builds search documents from the truth: a repo row, its main branch, card and weights."""

    def __init__(self, blobs: BlobStore, cards: CardReader) -> None:
        self._blobs = blobs
        self._cards = cards

    def build(self, session: Session, rows: Sequence[Repo]) -> list[SearchDoc]:
        docs: list[SearchDoc] = []
        for start in range(0, len(rows), CHUNK):
            docs += self._build_chunk(session, rows[start : start + CHUNK])
        return docs

    def _build_chunk(self, session: Session, rows: Sequence[Repo]) -> list[SearchDoc]:
        ids = [r.id for r in rows]
        heads = dict(
            session.exec(
                select(Ref.repo_id, Ref.commit_id).where(
                    col(Ref.repo_id).in_(ids), Ref.name == "refs/heads/main"
                )
            ).all()
        )
        files: dict[str, list[TreeEntry]] = {}
        readmes: dict[str, TreeEntry] = {}
        interesting = col(TreeRow.path).endswith(".safetensors") | (TreeRow.path == "README.md")
        for tree_row in session.exec(
            select(TreeRow).where(col(TreeRow.commit_id).in_(list(heads.values())), interesting)
        ).all():
            entry = tree_file(
                (
                    tree_row.path,
                    tree_row.blake3,
                    tree_row.sha256,
                    tree_row.size,
                    tree_row.lfs,
                    tree_row.git_sha1,
                    tree_row.last_commit,
                )
            ).entry
            if entry.path == "README.md":
                readmes[tree_row.commit_id] = entry
            else:
                files.setdefault(tree_row.commit_id, []).append(entry)
        return [self._doc(r, heads.get(r.id or 0), readmes, files) for r in rows]

    def _doc(
        self,
        row: Repo,
        commit: str | None,
        readmes: dict[str, TreeEntry],
        files: dict[str, list[TreeEntry]],
    ) -> SearchDoc:
        base = repo_doc(row, commit)
        if commit is None:
            return base.with_words()
        readme = readmes.get(commit)
        card = self._cards.card(commit, readme)
        weights = self._cards.weights(commit, files.get(commit, [])[:MAX_WEIGHT_FILES])
        training = weights.training if weights else {}
        return replace(
            base,
            kind=card.kind,
            base_model=card.base_model or training.get("ss_base_model_version"),
            license=card.license,
            description=card.description,
            tags=tuple(card.tags),
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
    def __init__(self, db: Database, builder: DocBuilder, fulltext: FullText) -> None:
        self._db = db
        self._builder = builder
        self._fulltext = fulltext

    def position(self) -> IndexPosition:
        with self._db.legacy_read() as session:
            cursor = _cursor(session)
            first = session.exec(
                select(Change.created_ms)
                .where(Change.serial > cursor)
                .order_by(col(Change.serial))
                .limit(1)
            ).first()
        return IndexPosition(cursor, self._db.head_serial(), first)

    def run_once(self, batch: int = 500) -> int:
        """Index the repos of the next `batch` log entries; returns how many were consumed."""
        with self._db.legacy_read() as session:
            cursor = _cursor(session)
            changes = session.exec(
                select(Change.serial, Change.repo)
                .where(Change.serial > cursor)
                .order_by(col(Change.serial))
                .limit(batch)
            ).all()
            if not changes:
                return self._refresh_incomplete(session)
            keys = {repo for _, repo in changes}
            rows = rows_by_key(session, keys)
            docs = self._builder.build(session, list(rows.values()))  # file reads: no lock held
        with self._db.legacy_write() as session:
            if _cursor(session) != cursor:
                return 0  # another process indexed these entries meanwhile
            for doc in docs:
                self._put(session, doc)
            if len(rows) < len(keys):
                self._drop_orphans(session)
            _set_cursor(session, changes[-1][0])
        return len(changes)

    def _refresh_incomplete(self, session: Session) -> int:
        """Re-read documents whose card was not stored here yet (a replica's lazy blobs)."""
        ids = session.exec(
            select(SearchEntry.repo_id).where(col(SearchEntry.complete).is_(False)).limit(100)
        ).all()
        rows = session.exec(select(Repo).where(col(Repo.id).in_(ids))).all() if ids else []
        docs = [d for d in self._builder.build(session, rows) if d.complete]
        if docs:
            with self._db.legacy_write() as writer:
                for doc in docs:
                    self._put(writer, doc)
        return 0

    def _put(self, session: Session, doc: SearchDoc) -> None:
        session.execute(delete(SearchTag).where(col(SearchTag.repo_id) == doc.repo_id))
        entry = session.get(SearchEntry, doc.repo_id) or SearchEntry(
            repo_id=doc.repo_id, indexed_ms=0
        )
        entry.commit_id, entry.kind = doc.commit_id, doc.kind
        entry.repo_updated_ms = doc.updated_ms
        entry.base_model, entry.base_model_key = doc.base_model, normalize_key(doc.base_model)
        entry.license, entry.description = doc.license, doc.description
        entry.tags, entry.trigger_words = json.dumps(doc.tags), json.dumps(doc.trigger_words)
        entry.suggested_tags, entry.complete = json.dumps(doc.suggested_tags), doc.complete
        entry.indexed_ms = now_ms()
        session.add(entry)
        for tag in dict.fromkeys(doc.tags):
            session.add(SearchTag(repo_id=doc.repo_id, tag=tag))
        self._fulltext.put(session, doc.repo_id, " ".join(doc.words))

    def _drop_orphans(self, session: Session) -> None:
        """Forget index rows of deleted repos (searches join on live repos, so this is tidying)."""
        live = select(Repo.id)
        orphans = session.exec(
            select(SearchEntry.repo_id).where(col(SearchEntry.repo_id).not_in(live))
        ).all()
        for repo_id in orphans:
            session.execute(delete(SearchTag).where(col(SearchTag.repo_id) == repo_id))
            session.execute(delete(SearchEntry).where(col(SearchEntry.repo_id) == repo_id))
            self._fulltext.delete(session, repo_id)


def _cursor(session: Session) -> int:
    row = session.get(NodeState, CURSOR_KEY)
    return int(row.value) if row else 0


def _set_cursor(session: Session, serial: int) -> None:
    row = session.get(NodeState, CURSOR_KEY) or NodeState(key=CURSOR_KEY, value="0")
    row.value = str(serial)
    session.add(row)
