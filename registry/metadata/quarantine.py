"""Blobs a scrub found corrupt or missing: never served while held."""

from __future__ import annotations

from sqlmodel import Session

from registry.domain.digest import Digest
from registry.metadata.tables import BlobQuarantine


class Quarantined:
    def __init__(self, session: Session) -> None:
        self._session = session

    def holds(self, digest: Digest) -> bool:
        return self._session.get(BlobQuarantine, digest.hex) is not None
