"""Read use cases: revisions, trees, files, history and refs of a repo."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from registry.domain.access import Principal
from registry.domain.commit import TreeEntry, parent_dirs
from registry.domain.errors import EntryNotFoundError, RepoNotFoundError, RevisionNotFoundError
from registry.domain.manifest import Manifest, ManifestFile
from registry.domain.names import COMMIT_SHA, SHORT_SHA, RepoId
from registry.domain.records import CommitRecord, RefRecord, RepoRecord, TreeFile
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.cache import ReadCache, SharedGeneration
from registry.service.cards import Card, CardReader, WeightsSummary
from registry.service.repos import can_read, find_repo
from registry.service.settings import require_gate


@dataclass(frozen=True)
class Snapshot:
    """A repo at one resolved commit."""

    repo: RepoRecord
    commit: CommitRecord


@dataclass(frozen=True)
class Listed:
    """A tree listing item: a file (with its entry) or a directory."""

    path: str
    entry: TreeEntry | None  # None for directories
    last_commit: str | None = None


def _recency(commit: CommitRecord) -> tuple[int, str]:
    return commit.created_ms, commit.id


def resolve_commit(tx: Tx, repo: RepoRecord, revision: str) -> CommitRecord:
    """A branch, tag, `refs/...` name, full or abbreviated (>= 7 hex) commit id (not one a
    super-squash left behind: that history is gone)."""
    if COMMIT_SHA.match(revision):
        commit = tx.commits.get(revision)
        if commit is not None and commit.repo_id == repo.id and not tx.purges.squashed([revision]):
            return commit
    names = (
        [revision]
        if revision.startswith("refs/")
        else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
    )
    for name in names:
        ref = tx.refs.get(repo.id, name)
        if ref is not None:
            found = tx.commits.get(ref.commit_id)
            assert found is not None, "a ref always points at a stored commit"
            return found
    if SHORT_SHA.match(revision):
        matches = tx.commits.with_prefix(repo.id, revision, limit=2)
        if len(matches) == 1 and not tx.purges.squashed([matches[0].id]):
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
        return self._cards.card(commit_id, readme.entry if readme else None)

    def card_text(self, commit_id: str) -> str:
        """README.md of a commit as text ("" when there is none)."""
        readme = self.tree_map(commit_id).get("README.md")
        return self._cards.text(readme.entry) if readme else ""

    def weights(self, commit_id: str) -> WeightsSummary | None:
        files = [f.entry for p, f in self.tree_map(commit_id).items() if p.endswith(".safetensors")]
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
        found = self.cache.repos.get(repo)
        if found is None:
            return None
        if not can_read(principal, found):
            raise RepoNotFoundError()
        sha = self.cache.revisions.get((found.id, revision))
        commit = self.cache.commits.get(sha) if sha else None
        return Snapshot(found, commit) if commit is not None else None

    def snapshot(self, principal: Principal, repo: RepoId, revision: str) -> Snapshot:
        if self._shared is not None:
            self._shared.follow()
        cached = self._cached(principal, repo, revision)
        if cached is not None:
            return cached
        generation = self.cache.generation
        with self._db.read() as tx:
            found = find_repo(tx, principal, repo)
            commit = resolve_commit(tx, found, revision)
        self.cache.commits.put(commit.id, commit)
        if generation == self.cache.generation:  # no write committed meanwhile
            self.cache.repos.put(repo, found)
            self.cache.revisions.put((found.id, revision), commit.id)
        return Snapshot(found, commit)

    def require_gate(self, principal: Principal, repo: RepoRecord) -> None:
        """Refuse a gated repo's files to a reader it does not admit (GatedRepoError)."""
        with self._db.read() as tx:
            require_gate(tx, principal, repo)

    def tree_map(self, commit_id: str) -> dict[str, TreeFile]:
        """Path -> file of a commit's tree, sorted by path (cached: trees change only by a
        history rewrite, which empties the cache)."""
        cached = self.cache.trees.get(commit_id)
        if cached is not None:
            return cached
        generation = self.cache.generation
        with self._db.read() as tx:
            files = tx.commits.tree(commit_id)
        tree = {f.path: f for f in files}
        return (
            self.cache.trees.put(commit_id, tree) if generation == self.cache.generation else tree
        )

    def tree_maps(self, commit_ids: set[str]) -> dict[str, dict[str, TreeFile]]:
        """`tree_map` of several commits; those not cached are read in one statement."""
        found = {c: t for c in commit_ids if (t := self.cache.trees.get(c)) is not None}
        missing = sorted(commit_ids - found.keys())
        if missing:
            generation = self.cache.generation
            with self._db.read() as tx:
                read = tx.commits.trees(missing)
            for commit_id, files in read.items():
                found[commit_id] = {f.path: f for f in files}
                if generation == self.cache.generation:
                    self.cache.trees.put(commit_id, found[commit_id])
        return found

    def manifest(self, principal: Principal, repo: RepoId, revision: str) -> Manifest:
        """A revision's files with every hash a client may verify them by."""
        snap = self.snapshot(principal, repo, revision)
        files = tuple(
            ManifestFile(e.path, e.size, e.blake3.hex, e.sha256, e.git_sha1)
            for e in (f.entry for f in self.tree_map(snap.commit.id).values())
        )
        rid = snap.repo.repo
        return Manifest(
            repo=rid.full_name,
            repo_type=rid.type.value,
            commit=snap.commit.id,
            files=files,
            parent=snap.commit.parent,
            title=snap.commit.title,
            created_ms=snap.commit.created_ms,
        )

    def tree(self, commit_id: str) -> list[TreeFile]:
        return list(self.tree_map(commit_id).values())

    def cached_file(self, snap: Snapshot, path: str) -> TreeEntry | None:
        tree = self.cache.trees.get(snap.commit.id)
        found = tree.get(path) if tree is not None else None
        return found.entry if found is not None else None

    def file(self, snap: Snapshot, path: str) -> TreeEntry:
        found = self.tree_map(snap.commit.id).get(path)
        if found is None:
            self._require_not_purged(snap, path)
            raise EntryNotFoundError(
                f"{path} does not exist at {snap.commit.id}",
                detail={"commit": snap.commit.id, "path": path},
            )
        return found.entry

    def _require_not_purged(self, snap: Snapshot, path: str) -> None:
        with self._db.read() as tx:
            purged = tx.purges.purged(snap.commit.id, path)
        if purged is not None:
            raise EntryNotFoundError(
                f"{path} was permanently deleted from this repo (LFS file {purged.sha256}, "
                f"{purged.size} bytes): no revision serves it any more",
                detail={"commit": snap.commit.id, "path": path, "oid": purged.sha256},
            )

    def listing(
        self,
        principal: Principal,
        repo: RepoId,
        revision: str,
        folder: str,
        *,
        recursive: bool,
        expand: bool = False,
    ) -> list[Listed]:
        """Files and directories under `folder` ("" = root) of a revision, sorted,
        directories included (with `expand`, each with its last commit too)."""
        snap = self.snapshot(principal, repo, revision)
        rows = self.tree(snap.commit.id)
        prefix = f"{folder}/" if folder else ""
        inside = [r for r in rows if r.path.startswith(prefix)]
        if folder and not inside:
            raise EntryNotFoundError(
                f"Folder {folder!r} does not exist",
                detail={"commit": snap.commit.id, "path": folder},
            )
        items: dict[str, Listed] = {}
        for f in inside:
            rest = f.path[len(prefix) :]
            if not recursive and "/" in rest:
                child = prefix + rest.split("/", 1)[0]
                items.setdefault(child, Listed(child, None))
                continue
            items[f.path] = Listed(f.path, f.entry, f.last_commit)
            for d in parent_dirs(rest) if recursive else []:
                items.setdefault(prefix + d, Listed(prefix + d, None))
        listed = [items[k] for k in sorted(items)]
        return self._folder_commits(listed, rows) if expand else listed

    def paths_info(
        self,
        principal: Principal,
        repo: RepoId,
        revision: str,
        paths: Iterable[str],
        *,
        expand: bool = False,
    ) -> list[Listed]:
        """The files and directories of a revision at these paths (unknown paths left out;
        with `expand`, directories with their last commit too)."""
        rows = self.tree_map(self.snapshot(principal, repo, revision).commit.id)
        dirs = {d for p in rows for d in parent_dirs(p)}
        found: list[Listed] = []
        for path in dict.fromkeys(p.strip("/") for p in paths):
            if path in rows:
                found.append(Listed(path, rows[path].entry, rows[path].last_commit))
            elif path in dirs:
                found.append(Listed(path, None))
        return self._folder_commits(found, rows.values()) if expand else found

    def _folder_commits(self, items: list[Listed], rows: Iterable[TreeFile]) -> list[Listed]:
        """The directories among `items` with their last commit, as the Hub's `lastCommit`:
        the newest of the last commits of the files under them."""
        folders = {i.path for i in items if i.entry is None}
        if not folders:
            return items
        under: dict[str, set[str]] = {f: set() for f in folders}
        for row in rows:  # one pass: each file adds its commit to the folders holding it
            for d in parent_dirs(row.path):
                if d in under and row.last_commit:
                    under[d].add(row.last_commit)
        commits = self.commit_titles(set().union(*under.values()))
        newest = {
            f: max((commits[c] for c in ids if c in commits), key=_recency, default=None)
            for f, ids in under.items()
        }
        return [
            replace(i, last_commit=found.id)
            if i.entry is None and (found := newest.get(i.path)) is not None
            else i
            for i in items
        ]

    def commits(self, principal: Principal, repo: RepoId, revision: str) -> list[CommitRecord]:
        """History from a revision's commit back to the first, newest first."""
        snap = self.snapshot(principal, repo, revision)
        with self._db.read() as tx:
            by_id = {c.id: c for c in tx.commits.of_repo(snap.repo.id)}
        history: list[CommitRecord] = []
        current: CommitRecord | None = snap.commit
        while current is not None and len(history) <= len(by_id):
            history.append(current)
            current = by_id.get(current.parent) if current.parent else None
        return history

    def commit_titles(self, ids: set[str]) -> dict[str, CommitRecord]:
        with self._db.read() as tx:
            return tx.commits.by_ids(ids)

    def held_commit(self, commit_id: str) -> CommitRecord | None:
        """The commit with its tree, unless it is not stored or a super-squash left it behind
        (its tree is gone)."""
        with self._db.read() as tx:
            if tx.purges.squashed([commit_id]):
                return None
            return tx.commits.get(commit_id)

    def refs(self, principal: Principal, repo: RepoId) -> list[RefRecord]:
        """A repo's branches, tags and PR refs, sorted by name."""
        with self._db.read() as tx:
            return tx.refs.of_repo(find_repo(tx, principal, repo).id)
