"""The node's mirror pusher: drains each mirror's outbox, oldest change first.

Theory of operation: an outbox row names a change-log entry (a commit, or a ref move). A
commit is pushed as its blobs then its manifest; a ref move points the mirror's ref at the
commit. Rows of one repo go strictly in serial order: a failed row blocks the later rows of its
repo until its backoff ends, while other repos go on. A target that cannot be reached at all
pauses that mirror until the failed row's retry time. Every step is idempotent, so a row
pushed twice (a crash after the push, before the row was deleted) does no harm.

A ref is moved only after reading where it points on the mirror: a commit of ours that this
node no longer holds (it was restored from a backup taken before that commit) is kept there on
a `recovered/<name>` branch, and the roll-back is recorded for the mirror's status.

A file's bytes are copied out of the blob store only when a target reads them (a bucket that
has the blob, or a file it stores as Xet xorbs, never needs them); a file uploaded through Xet
also carries its recipe, which only a bucket uses.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from mirror.build import build_target
from mirror.node import NodeTarget
from mirror.targets import PushCommit, PushFile, Target, XetParts
from registry.domain.changes import CommitAdd, RefDelete, RefSet
from registry.domain.commit import TreeEntry
from registry.domain.errors import BlobUnavailableError, MirrorUnavailableError
from registry.service.mirrors import MirrorConfig, MirrorService, OutboxItem, RollbackRecord
from registry.service.reads import ReadService
from registry.storage import BlobStore, local_copy
from registry.storage.xet import Recipes

logger = logging.getLogger(__name__)
BATCH = 100


class Pusher:
    def __init__(
        self,
        mirrors: MirrorService,
        reads: ReadService,
        blobs: BlobStore,
        *,
        recipes: Recipes | None = None,
        allow_private_redirects: bool = False,
    ) -> None:
        self._mirrors = mirrors
        self._reads = reads
        self._blobs = blobs
        self._recipes = recipes  # files uploaded through Xet: their xorbs, for buckets
        self._allow_private_redirects = allow_private_redirects
        self._targets: dict[MirrorConfig, Target] = {}
        self._paused: dict[str, float] = {}  # mirror -> monotonic time it may be tried again
        self._failing: dict[str, float] = {}  # mirror -> monotonic time its pushes began to fail

    def run_once(self) -> int:
        """One pass over every mirror; returns how many outbox rows were pushed."""
        pushed = 0
        configs = self._mirrors.configs()
        for config in [c for c in self._targets if c not in configs]:  # removed or changed
            _close(self._targets.pop(config))
        for config in configs:
            if self._paused.get(config.name, 0) <= time.monotonic():
                pushed += self._drain(config)
        return pushed

    def close(self) -> None:
        for target in self._targets.values():
            _close(target)
        self._targets = {}

    def _target(self, config: MirrorConfig) -> Target:
        target = self._targets.get(config)
        if target is None:
            target = build_target(
                config.kind,
                config.name,
                config.url,
                config.token,
                self._mirrors,
                allow_private_redirects=self._allow_private_redirects,
            )
            self._targets[config] = target
        return target

    def _drain(self, config: MirrorConfig) -> int:
        pushed, blocked = 0, set()
        now_ms = time.time() * 1000
        for item in self._mirrors.next_items(config.name, BATCH):
            if item.repo in blocked:
                continue
            if item.next_ms > now_ms:  # backing off: later rows of this repo wait
                blocked.add(item.repo)
                continue
            try:
                self._push(self._target(config), item)
            except Exception as exc:  # recorded on the row; retried after its backoff
                self._log_failure(config.name, item, exc)
                self._mirrors.failed(item, f"{type(exc).__name__}: {exc}")
                blocked.add(item.repo)
                if isinstance(exc, MirrorUnavailableError | OSError):
                    self._pause(config.name, item)
                    break
                continue
            self._mirrors.done(item)
            self._log_success(config.name)
            pushed += 1
        return pushed

    def _log_failure(self, mirror: str, item: OutboxItem, exc: Exception) -> None:
        """A warning when a mirror begins to fail; its retries while it still fails are not
        news (the row and the mirror's status keep the newest error)."""
        level = logging.DEBUG if mirror in self._failing else logging.WARNING
        self._failing.setdefault(mirror, time.monotonic())
        logger.log(
            level,
            "mirror push failed mirror=%s serial=%d repo=%s error=%s",
            mirror,
            item.serial,
            item.repo,
            exc,
        )

    def _log_success(self, mirror: str) -> None:
        since = self._failing.pop(mirror, None)
        if since is not None:
            logger.info("mirror ok again mirror=%s after=%.0fs", mirror, time.monotonic() - since)

    def _pause(self, mirror: str, item: OutboxItem) -> None:
        retry = next((i for i in self._mirrors.next_items(mirror, 1)), item)
        delay = max(0.0, retry.next_ms / 1000 - time.time())
        self._paused[mirror] = time.monotonic() + delay

    def _push(self, target: Target, item: OutboxItem) -> None:
        with ExitStack() as files:  # temporary copies of blobs from a store without files
            self._push_item(target, item, files)

    def _push_item(self, target: Target, item: OutboxItem, files: ExitStack) -> None:
        repo_type, repo = item.repo.split("/", 1)
        match item.change():
            case CommitAdd() as added:
                target.push_commit(self._from_change(repo_type, repo, added, files))
            case RefSet(ref=ref, commit=commit_id):
                commit = self._from_store(repo_type, repo, commit_id, files)
                if commit is None:
                    logger.info(
                        "mirror skips a ref to a commit deleted or squashed since serial=%d",
                        item.serial,
                    )
                    return
                self._keep_lost_head(target, item, ref, commit_id)
                target.set_ref(commit, ref)
            case RefDelete(ref=ref):
                self._keep_lost_head(target, item, ref, None)
                target.delete_ref(repo_type, repo, ref)

    def _keep_lost_head(self, target: Target, item: OutboxItem, ref: str, new: str | None) -> None:
        """Before a ref moves on the mirror: if it points at a commit of ours this node lost (a
        restore from a backup), keep it on a `recovered/...` branch there and record the
        roll-back, so the mirror never goes back silently."""
        repo_type, repo = item.repo.split("/", 1)
        head = target.head(repo_type, repo, ref)
        if head is None or head.ours is None or head.ours == new:
            return
        if not self._mirrors.lost_here(head.ours):
            return
        kept = target.keep(repo_type, repo, ref, head)
        rollback = RollbackRecord(item.repo, ref, head.ours, new, kept, int(time.time() * 1000))
        self._mirrors.rolled_back(item.mirror, rollback)

    def _file(self, files: ExitStack, entry: TreeEntry) -> PushFile:
        recipe = self._recipes.recipe(entry.blake3) if self._recipes is not None else None
        if recipe is None and self._blobs.stat(entry.blake3) is None:
            raise _unavailable(entry)
        xet = XetParts(recipe, functools.partial(local_copy, self._blobs)) if recipe else None
        local = self._copier(files, entry)
        b3 = entry.blake3.hex
        return PushFile(entry.path, entry.size, b3, entry.sha256, entry.lfs, local, xet)

    def _copier(self, files: ExitStack, entry: TreeEntry) -> Callable[[], Path]:
        """A local copy of the blob, made on first call and kept until the push ends."""

        @functools.cache
        def copy() -> Path:
            local = files.enter_context(local_copy(self._blobs, entry.blake3))
            if local is None:  # collected or set aside since it was looked up
                raise _unavailable(entry)
            return local

        return copy

    def _from_change(
        self, repo_type: str, repo: str, commit: CommitAdd, stack: ExitStack
    ) -> PushCommit:
        files = tuple(self._file(stack, entry) for entry in commit.tree)
        return PushCommit(
            repo_type, repo, commit.id, commit.parent, commit.title, commit.created_ms, files
        )

    def _from_store(
        self, repo_type: str, repo: str, commit_id: str, stack: ExitStack
    ) -> PushCommit | None:
        row = self._reads.held_commit(commit_id)
        if row is None:
            return None
        files = tuple(self._file(stack, f.entry) for f in self._reads.tree_map(commit_id).values())
        return PushCommit(repo_type, repo, commit_id, row.parent, row.title, row.created_ms, files)


def _unavailable(entry: TreeEntry) -> BlobUnavailableError:
    return BlobUnavailableError(f"{entry.path} ({entry.blake3}) is not stored on this node yet")


def _close(target: Target) -> None:
    if isinstance(target, NodeTarget):  # the one kind holding a connection pool of its own
        target.close()
