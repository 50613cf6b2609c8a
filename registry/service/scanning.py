"""Safety scanning of model files: pickle imports (picklescan) and safetensors headers.

Theory of operation: the to-do list is derived from state (files with a scanned extension
whose blob has no verdict yet), so a crash or a stopped scanner loses nothing: files are
shown as `pending` until a verdict exists, never hidden. Verdicts are per blob, so the same
bytes in many repos are scanned once.
"""

from __future__ import annotations

import logging
import pickletools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from picklescan.scanner import SafetyLevel, scan_bytes

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError, SafetensorsError
from registry.domain.records import TreeFile
from registry.domain.safetensors import read_header
from registry.metadata.db import Database
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


def scan_blob(store: BlobStore, digest: Digest, name: str) -> Verdict | None:
    """Scan one stored file; `name` (its repo path) decides how. None when its bytes are not
    here. A safetensors file is checked by its header, read as ranges of the blob (never the
    whole file, which may be rebuilt from Xet chunks or sit in S3); a pickle is scanned from
    a local file. A storage failure raises (the file stays pending); a scanner failure is a
    verdict."""
    if name.endswith(".safetensors"):
        info = store.stat(digest)
        if info is None:
            return None

        def read(start: int, end: int) -> bytes:
            return b"".join(store.open(digest, start, end))

        try:
            read_header(read, info.size)
        except SafetensorsError as exc:
            return Verdict("unsafe", [f"invalid safetensors: {exc.message}"])
        return Verdict("clean", [])
    with local_copy(store, digest) as path:
        if path is None:
            return None
        try:
            return _scan_pickle(path, name)
        except Exception as exc:  # a scanner failure is a verdict, not a crash
            return Verdict("error", [f"{type(exc).__name__}: {exc}"])


def _scan_pickle(path: Path, name: str) -> Verdict:
    if name.endswith(".bin") and not _may_load_as_pickle(path):
        return Verdict("clean", [NOT_A_PICKLE])  # picklescan would log warnings, not find
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


# What a loader that unpickles (torch.load) accepts starts with a pickle opcode (a zip archive
# of pickles starts with `P`, itself an opcode). A `.bin` that starts with none of them is
# other data (raw tensors, a tokenizer's binary): nothing can unpickle it, nothing to warn of.
_PICKLE_FIRST_BYTES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
NOT_A_PICKLE = "not a pickle: no unpickling loader reads it"


def _may_load_as_pickle(path: Path) -> bool:
    with path.open("rb") as f:
        first = f.read(1)
    return bool(first) and first[0] in _PICKLE_FIRST_BYTES


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
        """Verdicts of these blobs (by BLAKE3 hex); a blob with none is pending."""
        missing = digests - self._known.keys()
        if missing:
            with self._db.read() as tx:
                found = tx.scans.verdicts(Digest(h) for h in missing)
            for digest, scan in found.items():
                self._known[digest.hex] = Verdict(scan.status, list(scan.findings))
        return {d: self._known.get(d, PENDING) for d in digests}

    def worst(self, tree: Mapping[str, TreeFile]) -> str | None:
        """The most severe verdict over a tree's scanned files (None when none is scanned)."""
        return self.worst_of([tree])[0]

    def worst_of(self, trees: Sequence[Mapping[str, TreeFile]]) -> list[str | None]:
        """`worst` of each tree, the verdicts of all of them read at once."""
        scanned = [
            {f.entry.blake3.hex for path, f in tree.items() if path.endswith(SCANNED)}
            for tree in trees
        ]
        known = self.verdicts(set().union(*scanned))
        return [
            max(
                (known[d].status for d in digests),
                key=lambda s: SEVERITY.index(s) if s in SEVERITY else 2,
            )
            if digests
            else None
            for digests in scanned
        ]

    def pending(self, limit: int = 50) -> list[tuple[Digest, str]]:
        """Blobs of scanned files with no verdict yet, each with one of its paths."""
        with self._db.read() as tx:
            return tx.scans.pending(SCANNED, limit)

    def run_once(self, limit: int = 50) -> int:
        """Scan what is pending and stored here; returns how many verdicts were recorded."""
        recorded = 0
        for digest, name in self.pending(limit):
            try:
                verdict = scan_blob(self._blobs, digest, name)
            except BlobNotFoundError:  # gone since it was listed
                verdict = None
            if verdict is None:
                continue  # bytes not here yet (a replica): stays pending
            with self._db.write() as tx:
                tx.scans.record(digest, verdict.status, verdict.findings, now_ms())
            self._known[digest.hex] = verdict
            self.version += 1
            recorded += 1
            if verdict.status != "clean":
                logger.warning(
                    "scan verdict=%s path=%s findings=%s", verdict.status, name, verdict.findings
                )
        return recorded
