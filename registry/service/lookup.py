"""Find a file everywhere by hash: BLAKE3, SHA-256, Civitai's AutoV2 (10 hex of SHA-256), and
for safetensors files the hashes generation tools write: AutoV3 (12 hex of the SHA-256 after the
header; the whole of it is kohya's `sshs_model_hash`) and AutoV1 (A1111's legacy 8 hex)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.errors import InvalidError
from registry.domain.modelhashes import SafetensorsHashes
from registry.metadata.commits import HashKind, RefFile
from registry.metadata.db import Database
from registry.service.repos import can_read

_HASH = re.compile(r"^(?:(blake3|sha256|autov1|autov2|autov3):)?([0-9a-f]+)$", re.IGNORECASE)
# (prefix, hex digits) -> what is looked up; a pair not here is refused.
_KINDS: dict[tuple[str, int], HashKind] = {
    ("", 64): "either",  # BLAKE3, SHA-256, or the SHA-256 after a safetensors header
    ("blake3", 64): "blake3",
    ("sha256", 64): "sha256",
    ("", 10): "sha256_prefix",  # AutoV2
    ("autov2", 10): "sha256_prefix",
    ("sha256", 10): "sha256_prefix",
    ("", 12): "autov3",
    ("autov3", 12): "autov3",
    ("", 8): "autov1",
    ("autov1", 8): "autov1",
}
_FORMS = (
    "A hash is 64 hex (BLAKE3, SHA-256 or a safetensors file's SHA-256 after its header; "
    "prefix blake3: or sha256: to choose), 10 hex (AutoV2), 12 hex (AutoV3) or 8 hex (AutoV1), "
    "optionally prefixed autov2:, autov3: or autov1:"
)


def autov2(sha256: str) -> str:
    """A file's AutoV2 hash as CivitAI shows it (and as `by_hash` takes it, in either case):
    the first 10 hex of its SHA-256, upper case."""
    return sha256[:10].upper()


@dataclass(frozen=True)
class FileHit:
    repo: str  # namespace/name
    repo_type: str
    ref: str  # refs/heads/main, refs/tags/v1, ...
    commit: str
    path: str
    size: int
    blake3: str
    sha256: str
    autov3: str | None = None  # safetensors files, once hashed (registry.service.modelhashes)
    autov1: str | None = None


class LookupService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def by_hash(self, principal: Principal, text: str, limit: int = 500) -> list[FileHit]:
        """Every ref whose tree holds a file with this hash, in repos the caller may see.

        A bare 64-hex value is looked up as BLAKE3, as SHA-256 and as the SHA-256 of a
        safetensors file after its header (kohya's `sshs_model_hash`); prefix `blake3:` or
        `sha256:` to choose. 10 hex is AutoV2 (the first 10 hex of the SHA-256), 12 hex AutoV3
        and 8 hex AutoV1 (see `registry.domain.modelhashes`), each optionally prefixed
        `autov2:`, `autov3:`, `autov1:`. Any case. AutoV3 and AutoV1 find a file once the
        background job has hashed it.

        Raises:
            InvalidError: not one of these forms.
        """
        match = _HASH.match(text.strip())
        kind = None if match is None else _KINDS.get(((match[1] or "").lower(), len(match[2])))
        if match is None or kind is None:
            raise InvalidError(_FORMS)
        with self._db.read() as tx:
            found = tx.commits.under_refs(match[2].lower(), kind, limit)
            hashes = tx.model_hashes.of({hit.file.entry.blake3 for hit in found})
        return [
            _hit(hit, hashes.get(hit.file.entry.blake3))
            for hit in found
            if can_read(principal, hit.repo)
        ]


def _hit(found: RefFile, made: SafetensorsHashes | None) -> FileHit:
    entry = found.file.entry
    return FileHit(
        found.repo.repo.full_name,
        found.repo.repo.type.value,
        found.ref.name,
        found.ref.commit_id,
        found.file.path,
        entry.size,
        entry.blake3.hex,
        entry.sha256,
        made.autov3 if made else None,
        made.autov1 if made else None,
    )
