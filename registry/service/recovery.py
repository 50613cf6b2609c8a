"""Bringing back to a home what its restore lost, from a peer that kept it.

Theory of operation: when a node is restored from a backup, its peers set aside the entries
of its old history (`registry.service.replication.abandon`) with the commits and blobs they
name. `modelyard recover` on the home reads those entries (`GET /v1/sync/set-aside` on the
peer), and for each repo homed here brings back each lost commit exactly as it was (same id,
parent and tree: the id is checked against its body first), after every file of its tree is
stored here (fetched from the peer and verified by BLAKE3 before it is stored). Then each
branch or tag the old history had moved gets a branch here, `recovered/<name>`, at the commit it
last pointed to: nothing is merged into the current branches, which stay as the home's new
history made them; the owner compares and moves what they want. Each import is logged like any
commit and ref move, so peers learn it; a peer marks its set-aside entries recovered when the
commit comes back. Running it again imports nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from registry.domain.changes import ChangeEntry, CommitAdd, RefDelete, RefSet
from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import Digest
from registry.domain.errors import InvalidError, MissingObjectError, RepoNotFoundError
from registry.domain.names import RECOVERED, RECOVERED_FROM, recovered_branches
from registry.domain.records import BlobRecord, RepoRecord
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.service.replication import store_commit
from registry.service.repos import NewCommit, move_ref, write_commit
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
Fetch = Callable[[Digest, int], None]  # store this blob here, verified, or raise


@dataclass
class RepoRecovery:
    """What one repo gets back: its lost commits (oldest first) and the refs to restore."""

    repo: str
    commits: list[CommitAdd] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # ref -> commit its old history left
    skipped: list[str] = field(default_factory=list)  # why entries could not be used

    @property
    def files(self) -> dict[Digest, int]:
        return {e.blake3: e.size for c in self.commits for e in c.tree}


@dataclass(frozen=True)
class LostFile:
    path: str
    size: int
    blake3: Digest


@dataclass(frozen=True)
class LostHead:
    """A branch or tag head a mirror bucket kept that this node lost: the bucket's manifests
    hold a commit's files and title, not its author or message, so it comes back as a new
    commit with those files (`RecoveryService.restore_head`)."""

    repo: str  # type/namespace/name
    ref: str
    commit: str  # its id here before the restore (and in the bucket)
    ancestors: tuple[str, ...]  # its parent, grandparent ... as far as the bucket knows
    title: str
    files: tuple[LostFile, ...]


@dataclass(frozen=True)
class Recovered:
    repo: str
    commits: int  # imported now (not here before)
    blobs: int  # fetched now
    bytes: int
    branches: list[str]  # made now


class RecoveryService:
    def __init__(self, db: Database, blobs: BlobStore, node: NodeIdentity) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node

    def plan(self, entries: Iterable[ChangeEntry], repo: str | None = None) -> list[RepoRecovery]:
        """What the set-aside entries of this node's old history give back, repo by repo
        (only `repo`, "namespace/name", if given)."""
        plans: dict[str, RepoRecovery] = {}
        for entry in sorted(entries, key=lambda e: e.origin_serial):
            if entry.origin != self._node.node_id:
                continue
            if repo is not None and entry.repo.split("/", 1)[1] != repo:
                continue
            plan = plans.setdefault(entry.repo, RepoRecovery(entry.repo))
            try:
                change = entry.change()
            except InvalidError as exc:
                plan.skipped.append(f"entry {entry.origin_serial}: {exc.message}")
                continue
            if isinstance(change, CommitAdd):
                plan.commits.append(change)
            elif isinstance(change, RefSet):
                plan.refs[change.ref] = change.commit
            elif isinstance(change, RefDelete):
                plan.refs.pop(change.ref, None)
        return list(plans.values())

    def recover(self, plan: RepoRecovery, fetch: Fetch) -> Recovered:
        """Import one repo's lost commits (their files fetched first) and restore its refs
        as `recovered/...` branches.

        Raises:
            RepoNotFoundError: the repo is not here (deleted since).
            InvalidError: a commit's id does not derive from its body.
        """
        with self._db.read() as tx:
            repo = self._repo(tx, plan.repo)
        for change in plan.commits:
            _check_id(repo, change)
        fetched = self._fetch_missing(plan.files, fetch)
        imported, branches = 0, []
        with self._db.write() as tx:
            repo = self._repo(tx, plan.repo)
            have = tx.commits.existing(c.id for c in plan.commits)
            for change in plan.commits:
                if change.id in have:
                    continue
                self._import(tx, repo, change)
                imported += 1
            known = tx.commits.existing(plan.refs.values())
            for ref, sha in plan.refs.items():
                if sha not in known:
                    continue
                branch = self._free_branch(tx, repo, ref, sha)
                if branch is not None:
                    move_ref(tx, self._node, repo, branch, sha)
                    branches.append(branch.removeprefix("refs/heads/"))
        logger.info(
            "recovered repo=%s commits=%d blobs=%d branches=%s",
            plan.repo,
            imported,
            len(fetched),
            branches,
        )
        return Recovered(plan.repo, imported, len(fetched), sum(fetched.values()), branches)

    def known(self, commits: Iterable[str]) -> set[str]:
        """Which of these commits this node holds."""
        with self._db.read() as tx:
            return tx.commits.existing(commits)

    def restore_head(self, head: LostHead, source: str, fetch: Fetch) -> Recovered:
        """A lost head as a new commit with its files (fetched first) on a `recovered/<name>`
        branch, whose parent is its nearest ancestor held here (else the repo's main); nothing
        when a recovered branch holds it already."""
        marker = f"{RECOVERED_FROM}{head.commit}"
        with self._db.read() as tx:
            repo = self._repo(tx, head.repo)
            if self._recovered_before(tx, repo, marker):
                return Recovered(head.repo, 0, 0, 0, [])
        files = {f.blake3: f.size for f in head.files}
        fetched = self._fetch_missing(files, fetch)
        with self._db.write() as tx:
            repo = self._repo(tx, head.repo)
            known = tx.commits.existing(head.ancestors)
            main = tx.refs.get(repo.id, "refs/heads/main")
            parent = next((c for c in head.ancestors if c in known), None)
            parent = parent or (main.commit_id if main else None)
            recorded = {d: tx.blobs.get(d) for d in files}
            tree = [_entry(f, recorded[f.blake3]) for f in head.files]
            branch = self._free_branch(tx, repo, head.ref, "")
            assert branch is not None, "no commit is empty"
            title = f"Recovered {head.title or head.ref} from {source}"[:200]
            new = NewCommit(parent, "recovery", title, marker, tree, {e.path for e in tree}, {})
            write_commit(tx, self._node, repo, new, branch)
        name = branch.removeprefix("refs/heads/")
        return Recovered(head.repo, 1, len(fetched), sum(fetched.values()), [name])

    def _recovered_before(self, tx: Tx, repo: RepoRecord, marker: str) -> bool:
        heads = [
            r for r in tx.refs.of_repo(repo.id) if r.name.startswith(f"refs/heads/{RECOVERED}")
        ]
        found = tx.commits.by_ids(r.commit_id for r in heads)
        return any(c.message == marker for c in found.values())

    def _repo(self, tx: Tx, key: str) -> RepoRecord:
        found = tx.repos.by_key(key)
        if found is None or found.home_node != self._node.node_id:
            raise RepoNotFoundError(f"Repository {key} is not homed here (deleted since?)")
        return found

    def missing(self, files: dict[Digest, int]) -> dict[Digest, int]:
        """Which of these files are not stored here: what recovering fetches."""
        with self._db.read() as tx:
            recorded = tx.blobs.recorded(files)
        return {d: s for d, s in files.items() if d not in recorded or self._blobs.stat(d) is None}

    def _fetch_missing(self, files: dict[Digest, int], fetch: Fetch) -> dict[Digest, int]:
        missing = self.missing(files)
        for digest, size in missing.items():
            fetch(digest, size)
        return missing

    def _import(self, tx: Tx, repo: RepoRecord, change: CommitAdd) -> None:
        """The commit as it was, logged as this node's so that peers learn it."""
        store_commit(tx, repo, change)
        tx.changes.append(self._node.node_id, repo, change)

    def _free_branch(self, tx: Tx, repo: RepoRecord, ref: str, sha: str) -> str | None:
        """`refs/heads/recovered/<name>` (with -2, -3 ... if taken by another commit); None
        when one of them points at `sha` already (recovered before)."""
        for name in recovered_branches(ref):
            held = tx.refs.get(repo.id, f"refs/heads/{name}")
            if held is None:
                return f"refs/heads/{name}"
            if held.commit_id == sha:
                return None
        raise AssertionError("recovered_branches ends by raising")


def _entry(file: LostFile, blob: BlobRecord | None) -> TreeEntry:
    """A lost file as a tree entry: an LFS file unless it is small enough for a git blob id."""
    if blob is None:
        raise MissingObjectError(f"{file.path} ({file.blake3}) was not stored here")
    return TreeEntry(
        file.path, file.blake3, blob.sha256, file.size, blob.git_sha1 is None, blob.git_sha1
    )


def _check_id(repo: RepoRecord, change: CommitAdd) -> None:
    derived = commit_id(
        repo_key=repo.key,
        incarnation=change.incarnation,
        parent=change.parent,
        author=change.author,
        title=change.title,
        message=change.message,
        created_ms=change.created_ms,
        tree=list(change.tree),
    )
    if derived != change.id:
        raise InvalidError(
            f"Commit {change.id} of {repo.key} does not derive from its body ({derived}): "
            "refusing it",
            detail={"commit": change.id},
        )
