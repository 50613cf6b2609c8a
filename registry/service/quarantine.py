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
from sqlalchemy import ColumnElement, func, true
from sqlmodel import Session, col, delete, select

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError
from registry.metadata.db import Database
from registry.metadata.tables import Blob, BlobQuarantine, Counter
from registry.storage import BlobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    reason: str  # corrupt | missing
    detail: str


@dataclass(frozen=True)
class Held:
    """A held blob, as status pages and `modelyard verify` show it."""

    blake3: str
    size: int
    reason: str
    detail: str
    found_ms: int
    attempts: int
    last_attempt_ms: int | None
    last_error: str | None


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


def bump(session: Session, name: str, by: int = 1) -> None:
    """Add to one of the node's running totals (a `counter` row, made on first use)."""
    row = session.get(Counter, name) or Counter(name=name, value=0)
    row.value += by
    session.add(row)


class Quarantine:
    """The hold book. Its writes leave read caches alone: nothing cached depends on it."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    def held(self, digest: Digest) -> bool:
        with self._db.legacy_read() as session:
            return session.get(BlobQuarantine, digest.hex) is not None

    def hold(self, digest: Digest, finding: Finding) -> bool:
        """Hold a blob; False when its row is gone (deleted since it was read) and nothing is
        held. A blob held already keeps what was found first."""
        with self._db.legacy_write(invalidates=False) as session:
            if session.get(Blob, digest.hex) is None:
                return False
            if session.get(BlobQuarantine, digest.hex) is not None:
                return True
            session.add(
                BlobQuarantine(
                    blake3=digest.hex,
                    reason=finding.reason,
                    detail=finding.detail,
                    found_ms=now_ms(),
                )
            )
            bump(session, f"scrub.{finding.reason}")
        logger.error(
            "blob held digest=%s reason=%s detail=%s", digest, finding.reason, finding.detail
        )
        return True

    def lift_if_good(self, digest: Digest, size: int) -> bool:
        """Lift a hold when the bytes now stored hash to the blob's name (then drop the bad
        copy set aside); False when they do not, or nothing was held."""
        if inspect(self._blobs, digest, size) is not None:
            return False
        with self._db.legacy_write(invalidates=False) as session:
            lifted = session.get(BlobQuarantine, digest.hex)
            if lifted is not None:
                session.delete(lifted)
                bump(session, "scrub.repaired")
        if lifted is None:
            return False
        logger.info("blob repaired, hold lifted digest=%s", digest)
        self._blobs.drop_aside(digest)
        return True

    def failed(self, digest: Digest, error: str) -> None:
        """A repair found no good copy; the blob stays held."""
        with self._db.legacy_write(invalidates=False) as session:
            row = session.get(BlobQuarantine, digest.hex)
            if row is not None:
                row.attempts += 1
                row.last_attempt_ms, row.last_error = now_ms(), error[:500]
                session.add(row)
                bump(session, "scrub.unrepairable")
        logger.error("blob not repaired digest=%s error=%s", digest, error)

    def due(self, tried_before_ms: int, limit: int = 1000) -> list[tuple[Digest, int]]:
        """Held blobs (with their sizes) whose last repair was before `tried_before_ms`."""
        with self._db.legacy_read() as session:
            rows = session.exec(
                select(Blob.blake3, Blob.size)
                .join(BlobQuarantine, col(BlobQuarantine.blake3) == Blob.blake3)
                .where(
                    col(BlobQuarantine.last_attempt_ms).is_(None)
                    | (col(BlobQuarantine.last_attempt_ms) < tried_before_ms)
                )
                .order_by(col(Blob.blake3))
                .limit(limit)
            ).all()
        return [(Digest(b3), size) for b3, size in rows]

    def forget_deleted(self) -> None:
        """Drop the holds of blobs deleted since (they are no longer anyone's to repair)."""
        with self._db.legacy_write(invalidates=False) as session:
            session.execute(
                delete(BlobQuarantine).where(col(BlobQuarantine.blake3).not_in(select(Blob.blake3)))
            )

    def count(self) -> int:
        with self._db.legacy_read() as session:
            held = select(func.count()).select_from(BlobQuarantine)
            kept = held.join(Blob, col(Blob.blake3) == BlobQuarantine.blake3)
            return int(session.exec(kept).one())

    def get(self, digest: Digest) -> Held | None:
        found = self._held(col(BlobQuarantine.blake3) == digest.hex, 1)
        return found[0] if found else None

    def listing(self, limit: int = 100) -> list[Held]:
        """The held blobs, first found first."""
        return self._held(true(), limit)

    def _held(self, where: ColumnElement[bool], limit: int) -> list[Held]:
        with self._db.legacy_read() as session:
            rows = session.exec(
                select(BlobQuarantine, Blob.size)
                .join(Blob, col(Blob.blake3) == BlobQuarantine.blake3)
                .where(where)
                .order_by(col(BlobQuarantine.found_ms), col(BlobQuarantine.blake3))
                .limit(limit)
            ).all()
        return [
            Held(
                q.blake3,
                size,
                q.reason,
                q.detail,
                q.found_ms,
                q.attempts,
                q.last_attempt_ms,
                q.last_error,
            )
            for q, size in rows
        ]
