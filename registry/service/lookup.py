"""Find a file everywhere by hash: BLAKE3, SHA-256, or Civitai's AutoV2 (10 hex of SHA-256)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, or_
from sqlmodel import col, select

from registry.domain.errors import InvalidError
from registry.metadata.db import Database
from registry.metadata.tables import Ref, Repo, TreeRow
from registry.service.auth import Principal, can_read
from registry.service.repos import repo_id_of

_HASH = re.compile(r"^(?:(blake3|sha256|autov2):)?([0-9a-fA-F]{10}|[0-9a-fA-F]{64})$")


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
        if len(value) == 10:
            wanted = and_(col(TreeRow.sha256) >= value, col(TreeRow.sha256) < value + "g")
        else:
            by_b3, by_sha = col(TreeRow.blake3) == value, col(TreeRow.sha256) == value
            wanted = {"blake3": by_b3, "sha256": by_sha}.get(kind or "", or_(by_b3, by_sha))
        stmt = (
            select(TreeRow, Ref, Repo)
            .join(Ref, col(Ref.commit_id) == TreeRow.commit_id)
            .join(Repo, col(Repo.id) == Ref.repo_id)
            .where(wanted)
            .order_by(col(Repo.namespace), col(Repo.name), col(Ref.name))
            .limit(limit)
        )
        with self._db.read() as session:
            rows = session.exec(stmt).all()
        return [
            FileHit(
                repo_id_of(repo).full_name,
                repo.type,
                ref.name,
                ref.commit_id,
                tree.path,
                tree.size,
                tree.blake3,
                tree.sha256,
            )
            for tree, ref, repo in rows
            if can_read(principal, repo)
        ]
