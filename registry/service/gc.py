"""Garbage collection: remove the blobs no commit references, and stale upload leftovers.

Theory of operation: a blob is *referenced* while a tree entry of any commit of any repo names
it (every branch, tag and PR ref and every older commit) or while a pending mirror push (a
`commit.add` row of the mirror outbox, which pushes from the change's own tree) still has to
send it. History is rewritten only on purpose, by the repo's owner (service/rewrite.py): a
super-squash drops the tree rows of the commits no ref of the repo reaches any more, and
permanently deleting an LFS file takes its tree rows out of every commit of the repo; the
blobs only those rows named are then unreferenced like a deleted repo's, with the same grace
(counted from when an upload last wanted them) and the same checks under the write lock.
Scan verdicts do not keep a blob alive (they are facts about bytes the scanner reads only
while a commit holds them); they are removed with it. Everything else, such as a blob only
deleted repos held, or an upload never committed, is garbage once its grace period has passed:

- a recorded blob (a `blob` row) counts from `wanted_ms`: the last time an upload stored it or
  relied on it being stored (an LFS batch answering "already stored", an LFS or native PUT
  skipped for it, a regular file a commit reused);
- bytes with no row (a crash between storing and recording them) count from the store's own
  modification time;
- upload temporaries count from their last write (local store) or their start (S3 multipart).

Whatever the grace period, even 0, gc keeps for HOLD seconds a blob an upload relied on after
it was stored (`wanted_ms > created_ms`), and bytes with no row yet: a commit or a row is
then moments away, and taking the bytes in between would leave it pointing at nothing.

gc deletes in write transactions, which the database serializes with every other write
(commits, replication; see metadata/db.py). In each it checks again, under that lock, that the
blob is unreferenced, not wanted within the grace period and not needed by the outbox, then
deletes its bytes, then its row, and commits. So a commit racing gc either committed first (gc
sees its tree rows and keeps the blob) or comes after and finds the row gone: it fails with
`MissingObject` (`repos.require_recorded`) instead of pointing at missing bytes. An upload that
relies on stored bytes marks them wanted first (`Blobs.want`, from `UploadService`), then looks
again: gc has either deleted them already (the upload stores them anew) or keeps them for the
grace period, which must therefore be longer than a client takes from upload to commit (default
24 h).
Xet: a file uploaded through Xet is a blob row whose bytes are its xorbs' (chunks stored
once); each xorb is a blob too, referenced while any recipe names it. When gc collects a Xet
file's row, its recipe goes with it and its xorbs are marked wanted: they are kept for the
longer of the grace and `xet.dedup_seconds` after that (or after a dedup answer last named
them), because clients keep dedup against chunk lists for that long and a shard naming a
missing xorb fails the whole upload.
Listing and checking only read: a dry run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import RegistryError
from registry.domain.records import BlobRecord
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.storage import BlobInfo, BlobStore

logger = logging.getLogger(__name__)
PAGE = 1000  # rows or listed blobs looked at per query
BATCH = 32  # blobs deleted per write transaction (holding the write lock meanwhile)
HOLD = 600  # seconds bytes reused or not recorded yet are kept, whatever the grace (above)

# Why a blob is garbage: bytes and row | bytes with no row | a row whose bytes are gone.
UNREFERENCED, UNRECORDED, BYTES_MISSING = "unreferenced", "unrecorded", "bytes_missing"

Progress = Callable[[str, int, int | None], None]  # phase, done, total (None: unknown)


@dataclass(frozen=True)
class Garbage:
    digest: Digest
    size: int
    reason: str  # UNREFERENCED | UNRECORDED | BYTES_MISSING

    @property
    def stored_bytes(self) -> int:
        return 0 if self.reason == BYTES_MISSING else self.size


@dataclass
class GcReport:
    """What a run found: in a dry run what would be freed, else what was freed."""

    deleted: bool
    grace: float
    garbage: list[Garbage] = field(default_factory=list)
    kept_recent: int = 0  # unreferenced, but wanted (or stored) within the grace period
    kept_for_mirrors: int = 0  # unreferenced, but a pending mirror push still sends it
    changed: int = 0  # garbage when listed, referenced or wanted again by its turn: kept
    uploads: int = 0  # stale upload leftovers

    @property
    def bytes(self) -> int:
        return sum(g.stored_bytes for g in self.garbage)


class GarbageCollector:
    def __init__(
        self, db: Database, blobs: BlobStore, grace: float, xorb_grace: float = 0.0
    ) -> None:
        """`grace`: seconds an unreferenced blob or upload leftover is kept (see module);
        `xorb_grace`: at least this long for a xorb (clients dedup against it meanwhile)."""
        self._db = db
        self._blobs = blobs
        self._grace = grace
        self._xorb_grace = max(grace, xorb_grace)

    def run(self, *, delete: bool, progress: Progress | None = None) -> GcReport:
        """Find the garbage; with `delete`, remove it.

        Raises:
            RegistryError: the blob store failed (UpstreamError for S3); OSError for a local
                store. What was deleted before that stays deleted, its rows with it.
        """
        report = progress or _quiet
        cutoff = _Cutoff(now_ms(), self._grace, self._xorb_grace)
        result = GcReport(deleted=delete, grace=self._grace)
        with self._db.read() as tx:
            needed = tx.blobs.awaiting_push()
        candidates = [*self._unreferenced_rows(cutoff, needed, result, report)]
        candidates += self._unrecorded_bytes(cutoff, needed, result, report)
        result.uploads = self._blobs.clear_uploads(self._grace, dry_run=not delete)
        if not delete:
            result.garbage = candidates
            return result
        for start in range(0, len(candidates), BATCH):
            result.garbage += self._delete(candidates[start : start + BATCH], cutoff)
            report("delete", min(start + BATCH, len(candidates)), len(candidates))
        result.changed = len(candidates) - len(result.garbage)
        logger.info(
            "gc freed blobs=%d bytes=%d uploads=%d kept_recent=%d kept_for_mirrors=%d",
            len(result.garbage),
            result.bytes,
            result.uploads,
            result.kept_recent,
            result.kept_for_mirrors,
        )
        return result

    def _unreferenced_rows(
        self, cutoff: _Cutoff, needed: set[Digest], result: GcReport, report: Progress
    ) -> Iterator[Garbage]:
        """Blob rows no tree entry names, page by page in blake3 order."""
        with self._db.read() as tx:
            total = tx.blobs.totals().count
        after: Digest | None = None
        seen = 0
        while True:
            with self._db.read() as tx:
                page = tx.blobs.page(after, PAGE)
                unreferenced = tx.blobs.unreferenced(blob.digest for blob in page)
                xorbs = tx.xet.xorb_blobs(unreferenced)
            for blob in page:
                if blob.digest not in unreferenced:
                    continue
                if cutoff.keeps_row(blob, xorb=blob.digest in xorbs):
                    result.kept_recent += 1
                elif blob.digest in needed:
                    result.kept_for_mirrors += 1
                else:
                    stored = self._blobs.stat(blob.digest) is not None
                    yield Garbage(blob.digest, blob.size, UNREFERENCED if stored else BYTES_MISSING)
            seen += len(page)
            report("records", seen, total)
            if len(page) < PAGE:
                return
            after = page[-1].digest

    def _unrecorded_bytes(
        self, cutoff: _Cutoff, needed: set[Digest], result: GcReport, report: Progress
    ) -> list[Garbage]:
        """Stored blobs with no row that nothing references (crash leftovers)."""
        found: list[Garbage] = []
        listed = self._blobs.iter_blobs()
        seen = 0
        while chunk := list(islice(listed, PAGE)):
            by_digest = {info.digest: info for info in chunk}
            with self._db.read() as tx:
                recorded = tx.blobs.recorded(by_digest)
                held = tx.blobs.referenced(by_digest)
            for digest, info in by_digest.items():
                if digest in recorded or digest in held:
                    continue  # rows are judged above; bytes a replica lacks a row for are kept
                if cutoff.keeps_unrecorded(info):
                    result.kept_recent += 1
                elif digest in needed:
                    result.kept_for_mirrors += 1
                else:
                    found.append(Garbage(digest, info.size, UNRECORDED))
            seen += len(chunk)
            report("store", seen, None)
        return found

    def _delete(self, batch: list[Garbage], cutoff: _Cutoff) -> list[Garbage]:
        """Delete what is still garbage under the write lock; returns what was deleted."""
        deleted: list[Garbage] = []
        failure: Exception | None = None
        with self._db.write() as tx:  # readers remember which files Xet serves
            needed = tx.blobs.awaiting_push()
            for garbage in batch:
                if not _still_garbage(tx, garbage, cutoff, needed):
                    continue
                try:
                    self._blobs.delete(garbage.digest)
                    self._blobs.drop_aside(garbage.digest)  # a held blob's bad copy goes too
                except (RegistryError, OSError) as exc:
                    failure = exc  # rows of the blobs deleted so far still go, below
                    break
                deleted.append(garbage)
            gone = [g.digest for g in deleted]
            tx.blobs.remove(gone)
            # A Xet file's bytes are its xorbs': its recipe goes, and from now on its xorbs
            # count their grace (clients may still dedup against them meanwhile).
            tx.blobs.want(tx.xet.forget_files(gone))
            tx.xet.forget_xorbs(gone)
        if failure is not None:
            raise failure
        return deleted


def _still_garbage(tx: Tx, garbage: Garbage, cutoff: _Cutoff, needed: set[Digest]) -> bool:
    if garbage.digest in needed or tx.blobs.is_referenced(garbage.digest):
        return False
    blob = tx.blobs.get(garbage.digest)
    if garbage.reason == UNRECORDED:
        return blob is None  # recorded since: an upload of the same bytes finished
    xorb = bool(tx.xet.xorb_blobs([garbage.digest]))
    return blob is not None and not cutoff.keeps_row(blob, xorb=xorb)


@dataclass(frozen=True)
class _Cutoff:
    """Which times are too recent to collect, for a run started at `now_ms`."""

    now_ms: int
    grace: float
    xorb_grace: float

    @property
    def _grace_ms(self) -> int:
        return self.now_ms - int(self.grace * 1000)

    @property
    def _xorb_grace_ms(self) -> int:
        return self.now_ms - int(self.xorb_grace * 1000)

    @property
    def _hold_ms(self) -> int:
        return self.now_ms - HOLD * 1000

    def keeps_row(self, blob: BlobRecord, *, xorb: bool = False) -> bool:
        """Whether a blob row is too recent to collect. A xorb counts its own grace from
        when it was last stored, relied on or released by a file (no HOLD: that grace is
        the whole point, days by default)."""
        last = max(blob.wanted_ms, blob.created_ms)
        if xorb:
            return last >= self._xorb_grace_ms
        reused = blob.wanted_ms > blob.created_ms
        return last >= self._grace_ms or (reused and blob.wanted_ms >= self._hold_ms)

    def keeps_unrecorded(self, info: BlobInfo) -> bool:
        assert info.modified is not None, "iter_blobs always says when"
        return info.modified * 1000 >= min(self._grace_ms, self._hold_ms)


def _quiet(_phase: str, _done: int, _total: int | None) -> None:
    return None
