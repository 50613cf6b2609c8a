"""Blobs a scrub found corrupt or missing: never served while held. A hold is kept until good
bytes are back, with what was found and how its repairs went."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, true
from sqlmodel import Session, col, select

from registry.domain.digest import Digest
from registry.metadata.tables import Blob, BlobQuarantine

ERROR_CHARS = 500  # of a failed repair's error, kept on the hold


@dataclass(frozen=True)
class Held:
    """A held blob, as status pages and `modelyard verify` show it."""

    blake3: str  # hex: /v1/status and `verify --json` show this dataclass as it is
    size: int
    reason: str
    detail: str
    found_ms: int
    attempts: int
    last_attempt_ms: int | None
    last_error: str | None


class Quarantined:
    def __init__(self, session: Session) -> None:
        self._session = session

    def holds(self, digest: Digest) -> bool:
        return self._session.get(BlobQuarantine, digest.hex) is not None

    def hold(self, digest: Digest, reason: str, detail: str, found_ms: int) -> None:
        """Hold a blob that has no hold yet (see `holds`)."""
        self._session.add(
            BlobQuarantine(blake3=digest.hex, reason=reason, detail=detail, found_ms=found_ms)
        )

    def lift(self, digest: Digest) -> bool:
        """Lift a blob's hold; False when it had none."""
        row = self._session.get(BlobQuarantine, digest.hex)
        if row is not None:
            self._session.delete(row)
        return row is not None

    def repair_failed(self, digest: Digest, error: str, at_ms: int) -> bool:
        """Count a repair that found no good copy on the hold; False when the blob is not
        held (lifted meanwhile)."""
        row = self._session.get(BlobQuarantine, digest.hex)
        if row is None:
            return False
        row.attempts += 1
        row.last_attempt_ms, row.last_error = at_ms, error[:ERROR_CHARS]
        self._session.add(row)
        return True

    def due(self, tried_before_ms: int, limit: int) -> list[tuple[Digest, int]]:
        """Held blobs (with their sizes) never repaired or last tried before `tried_before_ms`,
        in BLAKE3 order."""
        rows = self._session.exec(
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
        """Drop the holds of blobs no longer recorded (no longer anyone's to repair)."""
        self._session.execute(
            delete(BlobQuarantine).where(col(BlobQuarantine.blake3).not_in(select(Blob.blake3)))
        )

    def count(self) -> int:
        """How many recorded blobs are held."""
        held = select(func.count()).select_from(BlobQuarantine)
        kept = held.join(Blob, col(Blob.blake3) == BlobQuarantine.blake3)
        return int(self._session.exec(kept).one())

    def get(self, digest: Digest) -> Held | None:
        found = self._held(col(BlobQuarantine.blake3) == digest.hex, 1)
        return found[0] if found else None

    def listing(self, limit: int) -> list[Held]:
        """The held blobs that are recorded, first found first."""
        return self._held(true(), limit)

    def _held(self, where: ColumnElement[bool], limit: int) -> list[Held]:
        rows = self._session.exec(
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
