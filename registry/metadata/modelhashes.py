"""The hashes of safetensors blobs generation tools write (AutoV3, AutoV1, kohya's claims), and
which blobs still lack them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from registry.domain.digest import Digest
from registry.domain.modelhashes import SafetensorsHashes
from registry.metadata.blobs import unread_named
from registry.metadata.tables import ModelHash

SUFFIX = ".safetensors"  # in any case


class ModelHashes:
    def __init__(self, session: Session) -> None:
        self._session = session

    def pending(self, limit: int) -> list[Digest]:
        """Up to `limit` stored blobs some tree names `*.safetensors`, not hashed yet."""
        return unread_named(self._session, (SUFFIX,), ModelHash, limit)

    def record(
        self, digest: Digest, hashes: SafetensorsHashes | None, problem: str | None, at_ms: int
    ) -> None:
        """Record a blob's hashes, or (`hashes` None) why it has none; the first row stays
        (the same bytes give the same hashes)."""
        if self._session.get(ModelHash, digest.hex) is not None:
            return
        row = ModelHash(blake3=digest.hex, problem=problem, hashed_ms=at_ms)
        if hashes is not None:
            row.tail_sha256 = hashes.tail_sha256
            row.autov1 = hashes.autov1
            row.sshs_model_hash = hashes.sshs_model_hash
            row.sshs_legacy_hash = hashes.sshs_legacy_hash
        self._session.add(row)

    def of(self, digests: Iterable[Digest]) -> dict[Digest, SafetensorsHashes]:
        """The hashes of those of these blobs that have them."""
        rows = self._session.exec(
            select(ModelHash).where(
                col(ModelHash.blake3).in_({d.hex for d in digests}),
                col(ModelHash.tail_sha256).is_not(None),
            )
        ).all()
        return {
            Digest(r.blake3): SafetensorsHashes(
                r.tail_sha256 or "", r.autov1 or "", r.sshs_model_hash, r.sshs_legacy_hash
            )
            for r in rows
        }

    def problem(self, digest: Digest) -> str | None:
        """Why a blob has no hashes (None: it has them, or is pending)."""
        row = self._session.get(ModelHash, digest.hex)
        return None if row is None else row.problem
