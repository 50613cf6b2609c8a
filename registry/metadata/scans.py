"""Safety verdicts on blobs (a blob without one is pending)."""

from __future__ import annotations

from sqlmodel import Session


class Scans:
    def __init__(self, session: Session) -> None:
        self._session = session
