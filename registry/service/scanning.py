"""Safety scanning of model files: pickle imports (picklescan) and safetensors headers.

Theory of operation: the to-do list is derived from state (files with a scanned extension
whose blob has no verdict yet), so a crash or a stopped scanner loses nothing: files are
shown as `pending` until a verdict exists, never hidden. Verdicts are per blob, so the same
bytes in many repos are scanned once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from picklescan.scanner import SafetyLevel, scan_bytes
from sqlalchemy import or_
from sqlmodel import col, select

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import SafetensorsError
from registry.domain.records import TreeFile
from registry.domain.safetensors import read_header
from registry.metadata.db import Database
from registry.metadata.tables import ScanResult, TreeRow
from registry.storage import BlobStore, local_copy

logger = logging.getLogger(__name__)
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SCANNED = (*PICKLE_EXTENSIONS, ".safetensors")


@dataclass(frozen=True)
class Verdict:
    status: str  # pending | clean | unsafe | error
    findings: list[str]


PENDING = Verdict("pending", [])
SEVERITY = ("clean", "pending", "error", "unsafe")  # worst last


def scan_path(path: Path, name: str) -> Verdict:
    """Scan one stored file; `name` (its repo path) decides how."""
    if name.endswith(".safetensors"):
        with path.open("rb") as f:

            def read(start: int, end: int) -> bytes:
                f.seek(start)
                return f.read(end - start)

            try:
                read_header(read, path.stat().st_size)
            except SafetensorsError as exc:
                return Verdict("unsafe", [f"invalid safetensors: {exc.message}"])
        return Verdict("clean", [])
    with path.open("rb") as f:
        result = scan_bytes(f, name, Path(name).suffix)
    dangerous = [
        f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous
    ]
    if dangerous:
        return Verdict("unsafe", [f"imports {d}" for d in dangerous])
    if result.scan_err:
        return Verdict("error", ["not a pickle picklescan could read"])
    return Verdict("clean", [])


class ScanService:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self.version = 0  # moves with every verdict: cached answers that show them expire
        self._known: dict[str, Verdict] = {}  # verdicts are final: safe to keep in memory

    def cached(self, digest: str) -> Verdict | None:
        return self._known.get(digest)

    def verdict_of(self, path: str, digest: str) -> Verdict | None:
        """The verdict of a file at `path` (None for files that are not scanned)."""
        return self.verdicts({digest})[digest] if path.endswith(SCANNED) else None

    def verdicts(self, digests: set[str]) -> dict[str, Verdict]:
        """Verdicts of these blobs; a blob with none is pending."""
        missing = digests - self._known.keys()
        if missing:
            with self._db.legacy_read() as session:
                rows = session.exec(
                    select(ScanResult).where(col(ScanResult.blake3).in_(missing))
                ).all()
            for r in rows:
                self._known[r.blake3] = Verdict(r.status, json.loads(r.findings))
        return {d: self._known.get(d, PENDING) for d in digests}

    def worst(self, tree: Mapping[str, TreeFile]) -> str | None:
        """The most severe verdict over a tree's scanned files (None when none is scanned)."""
        scanned = {f.entry.blake3.hex for path, f in tree.items() if path.endswith(SCANNED)}
        statuses = [v.status for v in self.verdicts(scanned).values()]
        if not statuses:
            return None
        return max(statuses, key=lambda s: SEVERITY.index(s) if s in SEVERITY else 2)

    def pending(self, limit: int = 50) -> list[tuple[str, str]]:
        done = select(ScanResult.blake3)
        wanted = or_(*(col(TreeRow.path).endswith(ext) for ext in SCANNED))
        with self._db.legacy_read() as session:
            rows = session.exec(
                select(TreeRow.blake3, TreeRow.path)
                .where(wanted, col(TreeRow.blake3).not_in(done))
                .limit(limit * 4)
            ).all()
        unique = dict(rows)  # one path per blob is enough to pick the scanner
        return [(b3, path) for b3, path in unique.items()][:limit]

    def run_once(self, limit: int = 50) -> int:
        """Scan what is pending and stored here; returns how many verdicts were recorded."""
        recorded = 0
        for b3, name in self.pending(limit):
            with local_copy(self._blobs, Digest(b3)) as path:
                if path is None:
                    continue  # bytes not here yet (a replica): stays pending
                try:
                    verdict = scan_path(path, name)
                except Exception as exc:  # a scanner failure is a verdict, not a crash
                    verdict = Verdict("error", [f"{type(exc).__name__}: {exc}"])
            with self._db.legacy_write() as session:
                if session.get(ScanResult, b3) is None:
                    session.add(
                        ScanResult(
                            blake3=b3,
                            status=verdict.status,
                            findings=json.dumps(verdict.findings),
                            scanned_ms=now_ms(),
                        )
                    )
            self._known[b3] = verdict
            self.version += 1
            recorded += 1
            if verdict.status != "clean":
                logger.warning(
                    "scan verdict=%s path=%s findings=%s", verdict.status, name, verdict.findings
                )
        return recorded
