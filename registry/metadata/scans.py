"""Safety verdicts on blobs (a blob without one is pending), and the files still to scan."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, col, select

from registry.domain.digest import Digest
from registry.metadata.tables import ScanResult, TreeRow


@dataclass(frozen=True)
class ScanRecord:
    status: str  # clean | unsafe | error
    findings: tuple[str, ...]
    scanned_ms: int


class Scans:
    def __init__(self, session: Session) -> None:
        self._session = session

    def verdicts(self, digests: Iterable[Digest]) -> dict[Digest, ScanRecord]:
        """The verdicts recorded for these blobs (those without one are pending)."""
        rows = self._session.exec(
            select(ScanResult).where(col(ScanResult.blake3).in_({d.hex for d in digests}))
        ).all()
        return {
            Digest(r.blake3): ScanRecord(r.status, tuple(json.loads(r.findings)), r.scanned_ms)
            for r in rows
        }

    def pending(self, suffixes: Sequence[str], limit: int) -> list[tuple[Digest, str]]:
        """Files whose name ends with one of `suffixes` and whose blob has no verdict: up to
        `limit` blobs, each with one of its paths (enough to pick the scanner)."""
        named = or_(*(col(TreeRow.path).endswith(suffix) for suffix in suffixes))
        rows = self._session.exec(
            select(TreeRow.blake3, TreeRow.path)
            .where(named, col(TreeRow.blake3).not_in(select(ScanResult.blake3)))
            .limit(limit * 4)  # a blob may be in many trees: room for `limit` distinct ones
        ).all()
        unique = dict(rows)
        return [(Digest(b3), path) for b3, path in unique.items()][:limit]

    def record(self, digest: Digest, status: str, findings: Sequence[str], at_ms: int) -> None:
        """Record a blob's verdict, unless it has one (verdicts are final: the first stays)."""
        if self._session.get(ScanResult, digest.hex) is not None:
            return
        self._session.add(
            ScanResult(
                blake3=digest.hex,
                status=status,
                findings=json.dumps(list(findings)),
                scanned_ms=at_ms,
            )
        )
