"""Leases: which process runs a node-wide job."""

from __future__ import annotations

from sqlmodel import Session


class LeaseTable:
    def __init__(self, session: Session) -> None:
        self._session = session
