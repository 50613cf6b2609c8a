"""Rewriting a repo's history, as the Hub allows it: squashing a branch into one commit, and
permanently deleting LFS files.

A super-squash is an ordinary commit (no parent, the branch head's tree) and ref move, written
with their change-log entries in one transaction, so peers and mirrors take it like any
non-fast-forward move. In the same transaction the commits of the old history that no ref of
the repo reaches any more lose their trees (the commit rows stay: change-log entries and
mirrors name them), so gc collects the bytes only they named once its grace has passed; a
`commit.squash` entry names those commits, so replicas drop the same trees.

Permanently deleting an LFS file takes its entries out of every commit of the repo (recorded
in `purged_file`): a download of it at any revision answers 404 EntryNotFound saying it was
deleted, and gc frees its bytes unless another repo still names them (blobs are stored once
per node and shared). A `file.purge` entry names the files, so replicas take them out too.
Mirrors keep what they hold of the old history (neither kind is pushed).
"""

from __future__ import annotations

import logging
import re

from registry.domain.access import Principal
from registry.domain.changes import CommitSquash, FilePurge
from registry.domain.clock import now_ms
from registry.domain.errors import InvalidError, RevisionNotFoundError
from registry.domain.names import RepoId
from registry.metadata.db import Database
from registry.metadata.purges import LfsFile
from registry.service.cache import ReadCache
from registry.service.identity import NodeIdentity
from registry.service.repos import NewCommit, writable_repo, write_commit

logger = logging.getLogger(__name__)
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RewriteService:
    def __init__(self, db: Database, node: NodeIdentity, cache: ReadCache) -> None:
        self._db = db
        self._node = node
        self._cache = cache

    def squash(self, principal: Principal, repo: RepoId, branch: str, message: str) -> str:
        """Make `branch` one commit holding its head's tree; returns the new commit's id.

        Raises:
            RepoNotFoundError, UnauthorizedError, ForbiddenError, HomeMismatchError, or
            RevisionNotFoundError (no such branch: tags and commits are not squashed).
        """
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            ref = tx.refs.get(found.id, f"refs/heads/{branch}")
            if ref is None:
                raise RevisionNotFoundError(
                    f"Invalid rev id: {branch} (only the head of a branch can be squashed)"
                )
            files = tx.commits.tree(ref.commit_id)
            paths = {f.path for f in files}
            squashed = NewCommit(
                None, principal.user or "", message, "", [f.entry for f in files], paths, {}
            )
            sha = write_commit(tx, self._node, found, squashed, ref.name)
            unreachable = tx.purges.unreachable(found.id, ref.commit_id)
            dropped = tx.purges.squash_away(found.id, unreachable, now_ms())
            if unreachable:
                change = CommitSquash(found.incarnation, tuple(unreachable))
                tx.changes.append(self._node.node_id, found, change)
        self._cache.forget_trees()
        logger.info(
            "branch squashed repo=%s ref=%s commit=%s dropped=%d", repo, ref.name, sha, dropped
        )
        return sha

    def lfs_files(self, principal: Principal, repo: RepoId) -> list[LfsFile]:
        """Every LFS file a commit of the repo names (its owner or an admin asks)."""
        with self._db.read() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            return tx.purges.lfs_files(found.id)

    def delete_lfs_files(self, principal: Principal, repo: RepoId, sha256s: list[str]) -> int:
        """Take these LFS files out of every commit of the repo; returns the entries gone.

        Raises:
            InvalidError (not a SHA-256), and what `writable_repo` raises.
        """
        wanted = [s.lower() for s in sha256s]
        bad = [s for s in wanted if not SHA256.match(s)]
        if bad:
            raise InvalidError(f"Not a SHA-256 LFS oid: {bad[0]!r}", detail={"oid": bad[0]})
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            gone = tx.purges.purge(found.id, wanted, now_ms())
            if gone.files:
                purge = FilePurge(found.incarnation, gone.files)
                tx.changes.append(self._node.node_id, found, purge)
        self._cache.forget_trees()
        logger.info("lfs files deleted repo=%s oids=%d entries=%d", repo, len(wanted), gone.entries)
        return gone.entries
