"""The search index: a cache of each repo's main branch, with its tags and words, and what
keeps it (the change-log entries past the index's cursor, the repos they name, the main heads
and the files a document is made from).

The words go to a full-text table the migrations make, one kind per dialect: SQLite FTS5 on
the embedded default, a `tsvector` with a GIN index on Postgres. Both hold the words
`registry.domain.search.tokens` made, so matching is the same on both and in the direct query
over what is not indexed yet (`registry.service.search`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import Executable, TextClause, bindparam, delete, func, insert, text, tuple_
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlmodel import Session, col, select

from registry.domain.access import Principal
from registry.domain.clock import now_ms
from registry.domain.records import RepoRecord, TreeFile
from registry.domain.search import SearchDoc, SearchQuery, normalize_key
from registry.metadata.commits import TREE_COLUMNS, tree_file
from registry.metadata.repos import Repos, record_of, visible_to
from registry.metadata.tables import Change, Ref, Repo, RepoAlias, SearchEntry, SearchTag, TreeRow

CHUNK = 400  # values per IN (...) list: well under every database's bind-parameter limit
MAX_PAGE = 1000  # index rows read per query while skipping pending repos
# A filter that leaves at most this many repos is where a search starts (see `_narrow`): it
# reads them all and sorts them (~5 us a repo on SQLite), rather than walk the sort order.
NARROW = 500
MAIN = "refs/heads/main"
README = "README.md"
_Matching = sqlalchemy.Select[*tuple[Any, ...]]
# What an indexed document is read from: columns, not ORM rows (searches read many rows).
_INDEXED = (
    col(Repo.id),
    col(Repo.type),
    col(Repo.namespace),
    col(Repo.name),
    col(Repo.private),
    col(Repo.updated_ms),
    col(Repo.created_ms),
    col(Repo.downloads),
    col(SearchEntry.commit_id),
    col(SearchEntry.kind),
    col(SearchEntry.base_model),
    col(SearchEntry.license),
    col(SearchEntry.description),
    col(SearchEntry.tags),
    col(SearchEntry.trigger_words),
    col(SearchEntry.suggested_tags),
    col(SearchEntry.complete),
    col(Repo.home_node),
    col(Repo.gated),
)
_FILE_COLUMNS = (col(TreeRow.commit_id), *TREE_COLUMNS)
# Change-log entries with the key of the repo they are about here: a peer's repo held under
# its qualified id (repo_alias) is logged with the key it has at its home.
_LOCAL_KEYS = select(Change.serial, func.coalesce(RepoAlias.local, Change.repo)).join(
    RepoAlias,
    (col(RepoAlias.repo) == col(Change.repo)) & (col(RepoAlias.home) == col(Change.origin)),
    isouter=True,
)


@dataclass(frozen=True)
class DocSource:
    """What a repo's search document is made from: the repo, its main branch's head, and the
    head's README.md and .safetensors files (in the order the database gave them)."""

    repo: RepoRecord
    head: str | None  # None: no main branch
    readme: TreeFile | None
    weights: tuple[TreeFile, ...]


def repo_doc(repo: RepoRecord, commit_id: str | None) -> SearchDoc:
    """What a search document takes from the repo itself (the rest is card and files)."""
    return SearchDoc(
        repo_id=repo.id,
        repo_type=repo.repo.type.value,
        namespace=repo.repo.namespace,
        name=repo.repo.name,
        private=repo.private,
        updated_ms=repo.updated_ms,
        created_ms=repo.created_ms,
        downloads=repo.downloads,
        commit_id=commit_id,
        home=repo.home_node,
        gated=repo.gated,
    )


class SearchIndex:
    def __init__(self, session: Session) -> None:
        self._session = session
        # The full-text tables differ by dialect (made by registry/metadata/migrations).
        self._sqlite = session.get_bind().dialect.name == "sqlite"

    # The change log past the index's cursor.

    def first_written_after(self, serial: int) -> int | None:
        """When the first change-log entry after `serial` was written (None: there is none)."""
        return self._session.exec(
            select(Change.created_ms)
            .where(Change.serial > serial)
            .order_by(col(Change.serial))
            .limit(1)
        ).first()

    def next_entries(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(serial, local repo key) of the first `limit` change-log entries after `after`, in
        order."""
        rows = self._session.exec(
            _LOCAL_KEYS.where(Change.serial > after).order_by(col(Change.serial)).limit(limit)
        ).all()
        return [(serial, key) for serial, key in rows]

    def entries_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        """(serial, local repo key) of every change-log entry in (after, upto], in no set
        order."""
        rows = self._session.exec(
            _LOCAL_KEYS.where(Change.serial > after, Change.serial <= upto)
        ).all()
        return [(serial, key) for serial, key in rows]

    # The truth documents are made from.

    def repos(self, keys: Iterable[str]) -> dict[str, RepoRecord]:
        """The repos of change-log repo keys (`model/alice/m1`), a moved repo under its key now
        (an entry before its move, or the move itself, names its old one); deleted repos are
        absent."""
        keys = set(keys)
        wanted = [tuple(k.split("/", 2)) for k in keys if k.count("/") >= 2]
        found: dict[str, RepoRecord] = {}
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start : start + CHUNK]
            where = tuple_(col(Repo.type), col(Repo.namespace), col(Repo.name)).in_(part)
            for row in self._session.exec(select(Repo).where(where)).all():
                record = record_of(row)
                found[record.key] = record
        moved = Repos(self._session).moved(k for k in keys if k not in found)
        found.update((r.key, r) for r in moved.values())
        return found

    def sources(self, repos: Sequence[RepoRecord]) -> list[DocSource]:
        """Each repo with its main head and the head's README.md and .safetensors files: two
        statements per CHUNK repos."""
        found: list[DocSource] = []
        for start in range(0, len(repos), CHUNK):
            found += self._sources(repos[start : start + CHUNK])
        return found

    def _sources(self, repos: Sequence[RepoRecord]) -> list[DocSource]:
        heads: dict[int, str] = dict(
            self._session.exec(
                select(Ref.repo_id, Ref.commit_id).where(
                    col(Ref.repo_id).in_([r.id for r in repos]), Ref.name == MAIN
                )
            ).all()
        )
        readmes: dict[str, TreeFile] = {}
        weights: dict[str, list[TreeFile]] = {}
        read = col(TreeRow.path).endswith(".safetensors") | (col(TreeRow.path) == README)
        rows = self._session.execute(
            sqlalchemy.select(*_FILE_COLUMNS).where(
                col(TreeRow.commit_id).in_(list(heads.values())), read
            )
        ).all()
        for row in rows:
            file = tree_file(row[1:])
            if file.path == README:
                readmes[row[0]] = file
            else:
                weights.setdefault(row[0], []).append(file)
        found = []
        for repo in repos:
            head = heads.get(repo.id)
            if head is None:
                found.append(DocSource(repo, None, None, ()))
            else:
                found.append(DocSource(repo, head, readmes.get(head), tuple(weights.get(head, ()))))
        return found

    def incomplete(self, limit: int) -> list[RepoRecord]:
        """Repos whose document was made before its card was stored here (a replica's lazy
        blobs), up to `limit` of them."""
        rows = self._session.exec(
            select(Repo)
            .join(SearchEntry, col(SearchEntry.repo_id) == col(Repo.id))
            .where(col(SearchEntry.complete).is_(False))
            .limit(limit)
        ).all()
        return [record_of(r) for r in rows]

    def indexed_after(self, repo_id: int, limit: int) -> list[RepoRecord]:
        """Indexed repos by id, from after `repo_id`, up to `limit` of them."""
        rows = self._session.exec(
            select(Repo)
            .join(SearchEntry, col(SearchEntry.repo_id) == col(Repo.id))
            .where(col(Repo.id) > repo_id)
            .order_by(col(Repo.id))
            .limit(limit)
        ).all()
        return [record_of(r) for r in rows]

    # The index itself.

    def put(self, docs: Iterable[SearchDoc]) -> None:
        """Store repos' documents with their tags and words, replacing what was there: a few
        statements per CHUNK documents (a statement per row costs ~10x more)."""
        # A repo's last document wins, as when documents were stored one at a time.
        latest = list({d.repo_id: d for d in docs}.values())
        for start in range(0, len(latest), CHUNK):
            self._put(latest[start : start + CHUNK])

    def _put(self, docs: Sequence[SearchDoc]) -> None:
        self._forget([d.repo_id for d in docs])
        indexed_ms = now_ms()
        entries = [
            {
                "repo_id": d.repo_id,
                "commit_id": d.commit_id,
                "repo_updated_ms": d.updated_ms,
                "kind": d.kind,
                "base_model": d.base_model,
                "base_model_key": normalize_key(d.base_model),
                "license": d.license,
                "description": d.description,
                "tags": json.dumps(d.tags),
                "trigger_words": json.dumps(d.trigger_words),
                "suggested_tags": json.dumps(d.suggested_tags),
                "complete": d.complete,
                "indexed_ms": indexed_ms,
            }
            for d in docs
        ]
        self._session.execute(insert(SearchEntry), entries)
        tags = [{"repo_id": d.repo_id, "tag": t} for d in docs for t in dict.fromkeys(d.tags)]
        if tags:
            self._session.execute(insert(SearchTag), tags)
        if self._sqlite:
            words = "INSERT INTO search_fts (rowid, words) VALUES (:id, :words)"
        else:
            words = "INSERT INTO search_text VALUES (:id, to_tsvector('simple', :words))"
        self._session.execute(
            text(words), [{"id": d.repo_id, "words": " ".join(d.words)} for d in docs]
        )

    def drop_orphans(self) -> None:
        """Forget the documents of deleted repos (searches join on live repos: this is tidying)."""
        live = select(Repo.id)
        orphans = self._session.exec(
            select(SearchEntry.repo_id).where(col(SearchEntry.repo_id).not_in(live))
        ).all()
        for start in range(0, len(orphans), CHUNK):
            self._forget(orphans[start : start + CHUNK])

    def matching(
        self, principal: Principal, query: SearchQuery, skip: set[int], need: int
    ) -> list[SearchDoc]:
        """The first `need` current documents the reader may see that match `query`, in the
        query's order, leaving out the repos in `skip`. A document older than its repo is
        stale and never matches (the caller finds that repo among the pending ones)."""
        found: list[SearchDoc] = []
        statement = self._statement(principal, query, narrow=self._narrow(query))
        for doc in self._paged(statement, need):
            if doc.repo_id not in skip:
                found.append(doc)
                if len(found) >= need:
                    break
        return found

    def _statement(self, principal: Principal, query: SearchQuery, *, narrow: bool) -> _Matching:
        order: SQLCoreOperations[int] = col(
            {"downloads": Repo.downloads, "created": Repo.created_ms}.get(
                query.sort, Repo.updated_ms
            )
        )
        repo_type: SQLCoreOperations[str] = col(Repo.type)
        if narrow:
            # SQLite keeps no statistics here, so it takes `type = ?` for selective and walks
            # the sort order's index, through every repo when a filter matches few of them. As
            # expressions, neither can use an index: it starts from the filter and sorts.
            repo_type, order = repo_type + "", order + 0
        stmt = (
            sqlalchemy.select(*_INDEXED)
            .select_from(Repo)
            .join(SearchEntry, col(SearchEntry.repo_id) == col(Repo.id))
            .where(repo_type == query.repo_type)
            .where(col(SearchEntry.repo_updated_ms) == col(Repo.updated_ms))
            .where(visible_to(principal))
        )
        if query.author:
            stmt = stmt.where(col(Repo.namespace) == query.author)
        if query.kind:
            stmt = stmt.where(col(SearchEntry.kind) == normalize_key(query.kind))
        if query.base_model:
            stmt = stmt.where(col(SearchEntry.base_model_key) == normalize_key(query.base_model))
        for tag in query.tags:
            tagged = select(SearchTag.repo_id).where(SearchTag.tag == tag)
            stmt = stmt.where(col(Repo.id).in_(tagged))
        if query.any_tags:
            tagged = select(SearchTag.repo_id).where(col(SearchTag.tag).in_(query.any_tags))
            stmt = stmt.where(col(Repo.id).in_(tagged))
        if query.words:
            stmt = stmt.where(col(Repo.id).in_(self._with_words(query.words)))
        return stmt.order_by(order.desc(), col(Repo.id).desc())

    def _narrow(self, query: SearchQuery) -> bool:
        """Whether one of the query's filters leaves at most NARROW repos. Walking the sort
        order and stopping after a page is fast while matches are common (a page of them is
        soon found), but for a rare tag, author, base model or word it reads every repo to
        find none (at 100 000 repos: ~8 ms, ~60 ms for a base model); starting from the
        filter reads only its repos. Each count stops after NARROW + 1 index rows."""
        return any(
            self._session.execute(counted).scalar_one() <= NARROW
            for counted in self._filter_counts(query)
        )

    def _filter_counts(self, query: SearchQuery) -> Iterator[Executable]:
        """How many repos each filter of `query` leaves, up to NARROW + 1; cheapest first."""
        ids: list[sqlalchemy.Select[Any]] = []
        if query.author:
            ids.append(sqlalchemy.select(col(Repo.id)).where(col(Repo.namespace) == query.author))
        ids += [
            sqlalchemy.select(col(SearchTag.repo_id)).where(col(SearchTag.tag) == t)
            for t in query.tags
        ]
        if query.any_tags:
            tagged = col(SearchTag.tag).in_(query.any_tags)
            ids.append(sqlalchemy.select(col(SearchTag.repo_id)).where(tagged))
        for column, value in (
            (SearchEntry.base_model_key, query.base_model),
            (SearchEntry.kind, query.kind),
        ):
            if value:
                entry = col(SearchEntry.repo_id)
                ids.append(sqlalchemy.select(entry).where(col(column) == normalize_key(value)))
        for stmt in ids:
            yield sqlalchemy.select(func.count()).select_from(stmt.limit(NARROW + 1).subquery())
        if query.words:
            sql, fts = self._words_sql(query.words)
            counted = text(f"SELECT count(*) FROM ({sql} LIMIT :n) AS c")
            yield counted.bindparams(fts=fts, n=NARROW + 1)

    def _paged(self, stmt: _Matching, first: int) -> Iterator[SearchDoc]:
        """Rows in order, fetched in pages that double from `first` (most searches need one)."""
        offset, size = 0, first
        while True:
            rows = self._session.execute(stmt.offset(offset).limit(size)).all()
            for row in rows:
                yield _indexed_doc(row)
            if len(rows) < size:
                return
            offset, size = offset + size, min(size * 2, MAX_PAGE)

    def _with_words(self, words: list[str]) -> TextClause:
        """A subquery of repo ids whose documents have a word starting with each of `words`."""
        sql, fts = self._words_sql(words)
        return text(sql).bindparams(fts=fts)

    def _words_sql(self, words: list[str]) -> tuple[str, str]:
        """The SELECT of `_with_words` (its `:fts` parameter unbound) and that parameter.

        `words` come from the tokenizer (letters and digits only), so they are safe to quote.
        """
        if self._sqlite:
            expression = " AND ".join(f'"{w}"*' for w in words)
            return "SELECT rowid FROM search_fts WHERE search_fts MATCH :fts", expression
        expression = " & ".join(f"'{w}':*" for w in words)
        sql = "SELECT repo_id FROM search_text WHERE words @@ to_tsquery('simple', :fts)"
        return sql, expression

    def _forget(self, repo_ids: Sequence[int]) -> None:
        """Delete these repos' documents, tags and words."""
        self._session.execute(delete(SearchTag).where(col(SearchTag.repo_id).in_(repo_ids)))
        self._session.execute(delete(SearchEntry).where(col(SearchEntry.repo_id).in_(repo_ids)))
        table, column = ("search_fts", "rowid") if self._sqlite else ("search_text", "repo_id")
        words = text(f"DELETE FROM {table} WHERE {column} IN :ids")
        self._session.execute(words.bindparams(bindparam("ids", expanding=True)), {"ids": repo_ids})


def _indexed_doc(row: Sequence[Any]) -> SearchDoc:
    """A document from a row of `_INDEXED`."""
    repo_id, repo_type, namespace, name, private, updated_ms, created_ms, downloads = row[:8]
    commit_id, kind, base_model, license, description, tags, trigger, suggested = row[8:16]
    complete, home, gated = row[16:]
    return SearchDoc(
        repo_id=repo_id,
        repo_type=repo_type,
        namespace=namespace,
        name=name,
        private=private,
        updated_ms=updated_ms,
        created_ms=created_ms,
        downloads=downloads,
        commit_id=commit_id,
        kind=kind,
        base_model=base_model,
        license=license,
        description=description,
        tags=tuple(json.loads(tags)),
        trigger_words=tuple(json.loads(trigger)),
        suggested_tags=tuple(json.loads(suggested)),
        complete=complete,
        home=home,
        gated=gated,
    )
