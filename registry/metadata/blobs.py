"""Blob records: the hashes and size of bytes the blob store holds, and when they were last
wanted by an upload (gc keeps unreferenced blobs for a grace period after that); and what
still needs a blob: the commits whose trees name it, the mirror pushes that still send it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, update
from sqlmodel import Session, col, select

from registry.domain.access import Principal
from registry.domain.changes import CommitAdd
from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.records import BlobRecord
from registry.metadata.repos import past_gate, visible_to
from registry.metadata.tables import (
    Blob,
    BlobQuarantine,
    Change,
    Commit,
    ImageRecord,
    ImageResource,
    MirrorOutbox,
    ModelHash,
    Repo,
    ScanResult,
    TreeRow,
    XetFileXorb,
)


@dataclass(frozen=True)
class BlobTotals:
    """How many blobs are recorded, and their bytes."""

    count: int
    bytes: int


def unread_named(session: Session, suffixes: Iterable[str], done: Any, limit: int) -> list[Digest]:
    """Up to `limit` blobs stored here (recorded, not quarantined) that some tree names with
    one of `suffixes` (in any case) and that `done` (a table keyed by blake3) has no row for."""
    path = func.lower(col(TreeRow.path))
    rows = session.exec(
        select(TreeRow.blake3)
        .join(Blob, col(Blob.blake3) == col(TreeRow.blake3))
        .where(
            or_(*(path.like(f"%{s}") for s in suffixes)),
            ~exists().where(col(done.blake3) == col(TreeRow.blake3)),
            ~exists().where(col(BlobQuarantine.blake3) == col(TreeRow.blake3)),
        )
        .distinct()
        .limit(limit)
    ).all()
    return [Digest(h) for h in rows]


def _record(row: Blob) -> BlobRecord:
    return BlobRecord(
        Digest(row.blake3), row.sha256, row.size, row.git_sha1, row.created_ms, row.wanted_ms
    )


class Blobs:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, digest: Digest) -> BlobRecord | None:
        row = self._session.get(Blob, digest.hex)
        return None if row is None else _record(row)

    def by_sha256(self, sha256: str) -> BlobRecord | None:
        row = self._session.exec(select(Blob).where(Blob.sha256 == sha256)).first()
        return None if row is None else _record(row)

    def recorded(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these blobs have a record."""
        hexes = {d.hex for d in digests}
        found = self._session.exec(select(Blob.blake3).where(col(Blob.blake3).in_(hexes))).all()
        return {Digest(h) for h in found}

    def record(self, digest: Digest, sha256: str, size: int, git_sha1: str | None) -> None:
        """Record a blob just stored (or stored again): it is wanted now (see `want`)."""
        now = now_ms()
        row = self._session.get(Blob, digest.hex)
        if row is None:
            row = Blob(
                blake3=digest.hex,
                sha256=sha256,
                size=size,
                git_sha1=git_sha1,
                created_ms=now,
                wanted_ms=now,
            )
        row.wanted_ms = now
        if row.git_sha1 is None and git_sha1 is not None:
            row.git_sha1 = git_sha1
        if not row.sha256 and sha256:  # stored without it (eager catch-up): hashed since
            row.sha256 = sha256
        self._session.add(row)

    def want(self, digests: Iterable[Digest]) -> int:
        """Mark these blobs wanted now; returns how many have a record."""
        return self._want(col(Blob.blake3).in_({d.hex for d in digests}))

    def want_sha256(self, sha256s: Iterable[str]) -> int:
        """As `want`, for blobs named by their SHA-256 (the Git LFS oid)."""
        return self._want(col(Blob.sha256).in_(set(sha256s)))

    def _want(self, which: ColumnElement[bool]) -> int:
        result = self._session.connection().execute(
            update(Blob).where(which).values(wanted_ms=now_ms())
        )
        return int(result.rowcount)

    def missing(self, limit: int) -> list[tuple[Digest, int]]:
        """Blobs some commit references that have no record here (not stored yet)."""
        rows = self._session.exec(
            select(TreeRow.blake3, TreeRow.size)
            .where(col(TreeRow.blake3).not_in(select(Blob.blake3)))
            .distinct()
            .limit(limit)
        ).all()
        return [(Digest(b3), size) for b3, size in rows]

    def lacking_sha256(self, limit: int) -> list[Digest]:
        """Up to `limit` blobs some commit's tree names that are recorded without their
        SHA-256 (an eager fetch defers it; a restart lost the queue that would fill it)."""
        in_tree = exists().where(col(TreeRow.blake3) == col(Blob.blake3))
        rows = self._session.exec(
            select(Blob.blake3).where(Blob.sha256 == "", in_tree).limit(limit)
        ).all()
        return [Digest(h) for h in rows]

    def named(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these blobs some commit's tree names."""
        wanted = sorted({d.hex for d in digests})
        rows = self._session.exec(
            select(TreeRow.blake3).where(col(TreeRow.blake3).in_(wanted)).distinct()
        ).all()
        return {Digest(b3) for b3 in rows}

    def in_visible_repo(self, digest: Digest, principal: Principal) -> bool | None:
        """Whether a repo whose files the principal may download (see it, and pass its gate)
        holds the blob in some commit; None when no repo holds it at all."""
        holders = (
            select(Repo.id)
            .join(Commit, col(Commit.repo_id) == Repo.id)
            .join(TreeRow, col(TreeRow.commit_id) == Commit.id)
            .where(TreeRow.blake3 == digest.hex)
        )
        visible = holders.where(visible_to(principal), past_gate(principal))
        if self._session.exec(visible.limit(1)).first() is not None:
            return True
        return False if self._session.exec(holders.limit(1)).first() is not None else None

    def page(self, after: Digest | None, limit: int) -> list[BlobRecord]:
        """Up to `limit` blob records in BLAKE3 order, from the one after `after` (None: from
        the first): a walk over every blob that resumes from the last one it saw."""
        rows = self._session.exec(
            select(Blob)
            .where(col(Blob.blake3) > (after.hex if after else ""))
            .order_by(col(Blob.blake3))
            .limit(limit)
        ).all()
        return [_record(row) for row in rows]

    def totals(self, after: Digest | None = None) -> BlobTotals:
        """How many blobs are recorded and their bytes (only those after `after` in BLAKE3
        order, when given: what is left of a walk)."""
        query = select(func.count(), func.sum(Blob.size))
        if after is not None:
            query = query.where(col(Blob.blake3) > after.hex)
        count, size = self._session.exec(query).one()
        return BlobTotals(int(count or 0), int(size or 0))

    def count(self) -> int:
        """How many blobs are recorded (what, with the change log's head unchanged, tells a
        background job there is no new work: see `service.idle`)."""
        return int(self._session.exec(select(func.count()).select_from(Blob)).one())

    def unreferenced(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these recorded blobs no tree entry of any commit names, and no recipe of a
        Xet file names as a xorb."""
        in_tree = exists().where(col(TreeRow.blake3) == col(Blob.blake3))
        in_recipe = exists().where(col(XetFileXorb.blake3) == col(Blob.blake3))
        found = self._session.exec(
            select(Blob.blake3).where(
                col(Blob.blake3).in_([d.hex for d in digests]), ~in_tree, ~in_recipe
            )
        ).all()
        return {Digest(h) for h in found}

    def referenced(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these blobs a tree entry of some commit, or a Xet file's recipe, names
        (recorded here or not)."""
        wanted = {d.hex for d in digests}
        in_trees = select(TreeRow.blake3).where(col(TreeRow.blake3).in_(wanted))
        in_recipes = select(XetFileXorb.blake3).where(col(XetFileXorb.blake3).in_(wanted))
        found = self._session.exec(in_trees.union(in_recipes)).all()  # type: ignore[call-overload]
        return {Digest(h) for (h,) in found}

    def is_referenced(self, digest: Digest) -> bool:
        """Whether a tree entry of some commit, or a Xet file's recipe, names the blob."""
        return bool(self.referenced([digest]))

    def awaiting_push(self) -> set[Digest]:
        """Blobs a pending mirror push of a commit still has to send: the files of the tree of
        each `commit.add` change in some mirror's outbox (a push sends the change's own tree)."""
        bodies = self._session.exec(
            select(Change.body)
            .join(MirrorOutbox, col(MirrorOutbox.serial) == col(Change.serial))
            .where(MirrorOutbox.kind == CommitAdd.KIND)
        ).all()
        # One change is in the outbox of each mirror that covers its repo: decoded once.
        trees = (CommitAdd.from_body(json.loads(body)).tree for body in set(bodies))
        return {entry.blake3 for tree in trees for entry in tree}

    def remove(self, digests: Iterable[Digest]) -> None:
        """Forget blobs whose bytes were deleted: their records, and with them their scan
        verdicts, holds and safetensors hashes (facts about bytes that are gone)."""
        gone = [d.hex for d in digests]
        if not gone:
            return
        for table in (Blob, ScanResult, BlobQuarantine, ModelHash, ImageRecord):
            self._session.execute(delete(table).where(col(table.blake3).in_(gone)))
        self._session.execute(delete(ImageResource).where(col(ImageResource.image).in_(gone)))
