"""Leases: which process runs a node-wide job, and until when (registry.service.leases)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, delete

from registry.metadata.tables import Lease


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str
    expires_ms: int


class LeaseTable:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str) -> LeaseRecord | None:
        row = self._session.get(Lease, name)
        return None if row is None else LeaseRecord(row.name, row.holder, row.expires_ms)

    def put(self, name: str, holder: str, expires_ms: int) -> None:
        """Give the lease to `holder` until `expires_ms` (the caller checked it may take it,
        in this transaction)."""
        row = self._session.get(Lease, name) or Lease(name=name, holder=holder, expires_ms=0)
        row.holder, row.expires_ms = holder, expires_ms
        self._session.add(row)

    def release(self, name: str, holder: str) -> None:
        """Drop the lease if `holder` has it."""
        self._session.execute(
            delete(Lease).where(col(Lease.name) == name, col(Lease.holder) == holder)
        )

    def release_all(self, holder: str) -> None:
        self._session.execute(delete(Lease).where(col(Lease.holder) == holder))
