"""Read use cases: revisions, trees, files, history and refs of a repo."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from registry.domain.commit import TreeEntry, parent_dirs
from registry.domain.digest import Digest
from registry.domain.errors import EntryNotFoundError, RepoNotFoundError, RevisionNotFoundError
from registry.domain.manifest import Manifest, ManifestFile
from registry.domain.names import COMMIT_SHA, SHORT_SHA, RepoId, RepoType
from registry.metadata.db import Database
from registry.metadata.tables import Commit, Ref, Repo, TreeRow
from registry.service.auth import Principal, can_read
from registry.service.cache import ReadCache, SharedGeneration
from registry.service.cards import Card, CardReader, WeightsSummary
from registry.service.repos import find_repo


@dataclass(frozen=True)
class Snapshot:
    """A repo at one resolved commit."""

    repo: Repo
    commit: Commit


@dataclass(frozen=True)
class Listed:
    """A tree listing item: a file (with its entry) or a directory."""

    path: str
    entry: TreeEntry | None  # None for directories
    last_commit: str | None = None


def entry_of(row: TreeRow) -> TreeEntry:
    return TreeEntry(row.path, Digest(row.blake3), row.sha256, row.size, row.lfs, row.git_sha1)


def resolve_commit(session: Session, repo: Repo, revision: str) -> Commit:
    """A branch, tag, `refs/...` name, full or abbreviated (>= 7 hex) commit id."""
    assert repo.id is not None
    if COMMIT_SHA.match(revision):
        commit = session.get(Commit, revision)
        if commit is not None and commit.repo_id == repo.id:
            return commit
    names = (
        [revision]
        if revision.startswith("refs/")
        else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
    )
    for name in names:
        ref = session.get(Ref, (repo.id, name))
        if ref is not None:
            found = session.get(Commit, ref.commit_id)
            assert found is not None, "a ref always points at a stored commit"
            return found
    if SHORT_SHA.match(revision):
        matches = session.exec(
            select(Commit)
            .where(Commit.repo_id == repo.id, col(Commit.id).startswith(revision))
            .limit(2)
        ).all()
        if len(matches) == 1:
            return matches[0]
    raise RevisionNotFoundError(f"Invalid rev id: {revision}")


class ReadService:
    """Reads through a ReadCache: a repeated request for a commit touches no database."""

    def __init__(self, db: Database, cache: ReadCache, cards: CardReader) -> None:
        self._db = db
        self.cache = cache
        self._cards = cards
        self._shared = SharedGeneration(cache, db.generation) if db.shared else None

    def card(self, commit_id: str) -> Card:
        readme = self.tree_map(commit_id).get("README.md")
        return self._cards.card(commit_id, entry_of(readme) if readme else None)

    def card_text(self, commit_id: str) -> str:
        """README.md of a commit as text ("" when there is none)."""
        readme = self.tree_map(commit_id).get("README.md")
        return self._cards.text(entry_of(readme)) if readme else ""

    def weights(self, commit_id: str) -> WeightsSummary | None:
        files = [
            entry_of(r) for p, r in self.tree_map(commit_id).items() if p.endswith(".safetensors")
        ]
        return self._cards.weights(commit_id, files) if files else None

    async def cached_snapshot(
        self, principal: Principal, repo: RepoId, revision: str
    ) -> Snapshot | None:
        """The snapshot if everything it needs is cached, else None. Awaits nothing but, on a
        database several processes share, a look at its write generation (SharedGeneration)."""
        if self._shared is not None and not await self._shared.followed():
            return None
        return self._cached(principal, repo, revision)

    def _cached(self, principal: Principal, repo: RepoId, revision: str) -> Snapshot | None:
        row = self.cache.repos.get(repo)
        if row is None or row.id is None:
            return None
        if not can_read(principal, row):
            raise RepoNotFoundError()
        sha = self.cache.revisions.get((row.id, revision))
        commit = self.cache.commits.get(sha) if sha else None
        return Snapshot(row, commit) if commit is not None else None

    def snapshot(self, principal: Principal, repo: RepoId, revision: str) -> Snapshot:
        if self._shared is not None:
            self._shared.follow()
        cached = self._cached(principal, repo, revision)
        if cached is not None:
            return cached
        generation = self.cache.generation
        with self._db.read() as session:
            row = find_repo(session, principal, repo)
            commit = resolve_commit(session, row, revision)
        assert row.id is not None
        self.cache.commits.put(commit.id, commit)
        if generation == self.cache.generation:  # no write committed meanwhile
            self.cache.repos.put(repo, row)
            self.cache.revisions.put((row.id, revision), commit.id)
        return Snapshot(row, commit)

    def tree_map(self, commit_id: str) -> dict[str, TreeRow]:
        """Path -> row of a commit's tree, sorted by path (cached: trees are immutable)."""
        cached = self.cache.trees.get(commit_id)
        if cached is not None:
            return cached
        with self._db.read() as session:
            rows = session.exec(
                select(TreeRow).where(TreeRow.commit_id == commit_id).order_by(col(TreeRow.path))
            ).all()
        return self.cache.trees.put(commit_id, {r.path: r for r in rows})

    def manifest(self, snap: Snapshot) -> Manifest:
        """The snapshot's files with every hash a client may verify them by."""
        files = tuple(
            ManifestFile(r.path, r.size, r.blake3, r.sha256, r.git_sha1)
            for r in self.tree_map(snap.commit.id).values()
        )
        rid = RepoId(RepoType(snap.repo.type), snap.repo.namespace, snap.repo.name)
        return Manifest(
            repo=rid.full_name,
            repo_type=rid.type.value,
            commit=snap.commit.id,
            files=files,
            parent=snap.commit.parent,
            title=snap.commit.title,
            created_ms=snap.commit.created_ms,
        )

    def tree(self, commit_id: str) -> list[TreeRow]:
        return list(self.tree_map(commit_id).values())

    def cached_file(self, snap: Snapshot, path: str) -> TreeEntry | None:
        tree = self.cache.trees.get(snap.commit.id)
        row = tree.get(path) if tree is not None else None
        return entry_of(row) if row is not None else None

    def file(self, snap: Snapshot, path: str) -> TreeEntry:
        row = self.tree_map(snap.commit.id).get(path)
        if row is None:
            raise EntryNotFoundError(
                f"{path} does not exist at {snap.commit.id}",
                detail={"commit": snap.commit.id, "path": path},
            )
        return entry_of(row)

    def listing(self, snap: Snapshot, folder: str, *, recursive: bool) -> list[Listed]:
        """Files and directories under `folder` ("" = root), sorted, directories included."""
        rows = self.tree(snap.commit.id)
        prefix = f"{folder}/" if folder else ""
        inside = [r for r in rows if r.path.startswith(prefix)]
        if folder and not inside:
            raise EntryNotFoundError(
                f"Folder {folder!r} does not exist",
                detail={"commit": snap.commit.id, "path": folder},
            )
        items: dict[str, Listed] = {}
        for row in inside:
            rest = row.path[len(prefix) :]
            if not recursive and "/" in rest:
                child = prefix + rest.split("/", 1)[0]
                items.setdefault(child, Listed(child, None))
                continue
            items[row.path] = Listed(row.path, entry_of(row), row.last_commit)
            for d in parent_dirs(rest) if recursive else []:
                items.setdefault(prefix + d, Listed(prefix + d, None))
        return [items[k] for k in sorted(items)]

    def paths_info(self, snap: Snapshot, paths: Iterable[str]) -> list[Listed]:
        rows = self.tree_map(snap.commit.id)
        dirs = {d for p in rows for d in parent_dirs(p)}
        found: list[Listed] = []
        for path in dict.fromkeys(p.strip("/") for p in paths):
            if path in rows:
                found.append(Listed(path, entry_of(rows[path]), rows[path].last_commit))
            elif path in dirs:
                found.append(Listed(path, None))
        return found

    def commits(self, snap: Snapshot) -> list[Commit]:
        """History from the snapshot's commit back to the first, newest first."""
        assert snap.repo.id is not None
        with self._db.read() as session:
            by_id = {
                c.id: c
                for c in session.exec(select(Commit).where(Commit.repo_id == snap.repo.id)).all()
            }
        history: list[Commit] = []
        current: Commit | None = snap.commit
        while current is not None and len(history) <= len(by_id):
            history.append(current)
            current = by_id.get(current.parent) if current.parent else None
        return history

    def commit_titles(self, ids: set[str]) -> dict[str, Commit]:
        with self._db.read() as session:
            return {
                c.id: c for c in session.exec(select(Commit).where(col(Commit.id).in_(ids))).all()
            }

    def refs(self, repo: Repo) -> list[Ref]:
        with self._db.read() as session:
            return list(
                session.exec(
                    select(Ref).where(Ref.repo_id == repo.id).order_by(col(Ref.name))
                ).all()
            )
