"""Blobs whose stored bytes failed verification: held, never served, until good bytes are back.

Theory of operation: a hold is a `blob_quarantine` row, committed before the bad bytes are set
aside (`BlobStore.set_aside`), so from that moment no process of the node serves the blob:
every path that serves stored bytes or trusts them asks `held` first (downloads, and
`UploadService.stored`, which decides whether a write is needed). A hold is lifted only after
the bytes under the blob's key were read back and hash to its name, by whoever wrote them: a
scrub's repair, a peer fetch, a pull-through download, an upload of the same file. A write that
changed nothing (bad bytes still in place) lifts nothing.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass

import blake3

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError
from registry.metadata.db import Database
from registry.metadata.quarantine import Held
from registry.storage import BlobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    reason: str  # corrupt | missing
    detail: str


def inspect(
    store: BlobStore, digest: Digest, size: int, pace: Callable[[int], None] | None = None
) -> Finding | None:
    """Read a stored blob back and hash it: None when the bytes are its own.

    Reads go to the store itself (S3: a GET; its size cache is not asked). `pace` is called
    with each chunk's length (and may raise to stop the read).
    """
    hasher = blake3.blake3()
    read = 0
    try:
        for chunk in store.open(digest):
            hasher.update(chunk)
            read += len(chunk)
            if pace is not None:
                pace(len(chunk))
    except BlobNotFoundError:
        return Finding("missing", "no bytes stored")
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return Finding("corrupt", f"unreadable: {exc}")
    if read != size:
        return Finding("corrupt", f"{read} bytes, expected {size}")
    if hasher.hexdigest() != digest.hex:
        return Finding("corrupt", f"hashes to blake3:{hasher.hexdigest()}")
    return None


class Quarantine:
    """The hold book. Its writes leave read caches alone: nothing cached depends on it."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    def held(self, digest: Digest) -> bool:
        with self._db.read() as tx:
            return tx.quarantine.holds(digest)

    def hold(self, digest: Digest, finding: Finding) -> bool:
        """Hold a blob; False when its row is gone (deleted since it was read) and nothing is
        held. A blob held already keeps what was found first."""
        with self._db.write(invalidates=False) as tx:
            if tx.blobs.get(digest) is None:
                return False
            if tx.quarantine.holds(digest):
                return True
            tx.quarantine.hold(digest, finding.reason, finding.detail, now_ms())
            tx.values.bump(f"scrub.{finding.reason}")
        logger.error(
            "blob held digest=%s reason=%s detail=%s", digest, finding.reason, finding.detail
        )
        return True

    def lift_if_good(self, digest: Digest, size: int) -> bool:
        """Lift a hold when the bytes now stored hash to the blob's name (then drop the bad
        copy set aside); False when they do not, or nothing was held."""
        if inspect(self._blobs, digest, size) is not None:
            return False
        with self._db.write(invalidates=False) as tx:
            lifted = tx.quarantine.lift(digest)
            if lifted:
                tx.values.bump("scrub.repaired")
        if not lifted:
            return False
        logger.info("blob repaired, hold lifted digest=%s", digest)
        self._blobs.drop_aside(digest)
        return True

    def failed(self, digest: Digest, error: str) -> None:
        """A repair found no good copy; the blob stays held."""
        with self._db.write(invalidates=False) as tx:
            if tx.quarantine.repair_failed(digest, error, now_ms()):
                tx.values.bump("scrub.unrepairable")
        logger.error("blob not repaired digest=%s error=%s", digest, error)

    def due(self, tried_before_ms: int, limit: int = 1000) -> list[tuple[Digest, int]]:
        """Held blobs (with their sizes) whose last repair was before `tried_before_ms`."""
        with self._db.read() as tx:
            return tx.quarantine.due(tried_before_ms, limit)

    def forget_deleted(self) -> None:
        """Drop the holds of blobs deleted since (they are no longer anyone's to repair)."""
        with self._db.write(invalidates=False) as tx:
            tx.quarantine.forget_deleted()

    def count(self) -> int:
        with self._db.read() as tx:
            return tx.quarantine.count()

    def get(self, digest: Digest) -> Held | None:
        with self._db.read() as tx:
            return tx.quarantine.get(digest)

    def listing(self, limit: int = 100) -> list[Held]:
        """The held blobs, first found first."""
        with self._db.read() as tx:
            return tx.quarantine.listing(limit)
