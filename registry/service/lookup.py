"""Find a file everywhere by hash: BLAKE3, SHA-256, or Civitai's AutoV2 (10 hex of SHA-256)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.errors import InvalidError
from registry.metadata.commits import HashKind
from registry.metadata.db import Database
from registry.service.repos import can_read

_HASH = re.compile(r"^(?:(blake3|sha256|autov2):)?([0-9a-fA-F]{10}|[0-9a-fA-F]{64})$")
_KINDS: dict[str, HashKind] = {"blake3": "blake3", "sha256": "sha256", "": "either"}


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


class LookupService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def by_hash(self, principal: Principal, text: str, limit: int = 500) -> list[FileHit]:
        """Every ref whose tree holds a file with this hash, in repos the caller may see.

        A bare 64-hex value is looked up as BLAKE3 and as SHA-256; prefix `blake3:` or
        `sha256:` to choose. 10 hex is an AutoV2 hash, the first 10 hex of the SHA-256.
        """
        match = _HASH.match(text.strip())
        if match is None:
            raise InvalidError(
                "A hash is 64 hex (BLAKE3 or SHA-256, optionally prefixed "
                "blake3: or sha256:) or 10 hex (AutoV2)"
            )
        kind, value = match.group(1), match.group(2).lower()
        by: HashKind = "sha256_prefix" if len(value) == 10 else _KINDS.get(kind or "", "either")
        with self._db.read() as tx:
            found = tx.commits.under_refs(value, by, limit)
        return [
            FileHit(
                hit.repo.repo.full_name,
                hit.repo.repo.type.value,
                hit.ref.name,
                hit.ref.commit_id,
                hit.file.path,
                hit.file.entry.size,
                hit.file.entry.blake3.hex,
                hit.file.entry.sha256,
            )
            for hit in found
            if can_read(principal, hit.repo)
        ]
