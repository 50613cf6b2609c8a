"""Xet bookkeeping: the xorbs held here with their chunk indexes, the files uploaded through
Xet with their terms, which xorbs each file names, and the global-dedup index of chunks."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.records import XetFileRecord, XorbRecord
from registry.domain.xet.types import (
    ChunkEntry,
    XetHash,
    XorbRef,
    pack_index,
    pack_terms,
    unpack_index,
    unpack_terms,
)
from registry.metadata.tables import (
    BlobQuarantine,
    Commit,
    TreeRow,
    XetChunk,
    XetFile,
    XetFileXorb,
    Xorb,
)


def _xorb(row: Xorb) -> XorbRecord:
    return XorbRecord(XetHash.parse(row.hash), Digest(row.blake3), row.size, _chunks(row.chunks))


@functools.lru_cache(maxsize=64)
def _chunks(index: bytes) -> tuple[ChunkEntry, ...]:
    """A stored chunk index, decoded once: a download asks for the same xorbs' indexes with
    every reconstruction (each ~1000 chunks; the 64 latest are at most ~20 MB)."""
    return tuple(unpack_index(index))


def _file(row: XetFile) -> XetFileRecord:
    return XetFileRecord(
        XetHash.parse(row.hash),
        Digest(row.blake3),
        row.sha256,
        row.size,
        tuple(unpack_terms(row.terms)),
    )


class XetIndex:
    def __init__(self, session: Session) -> None:
        self._session = session

    def xorb(self, xorb: XetHash) -> XorbRecord | None:
        row = self._session.get(Xorb, xorb.hex)
        return None if row is None else _xorb(row)

    def xorbs(self, hashes: Iterable[XetHash]) -> dict[XetHash, XorbRecord]:
        """The records of those of these xorbs that are held here."""
        wanted = {h.hex for h in hashes}
        rows = self._session.exec(select(Xorb).where(col(Xorb.hash).in_(wanted))).all()
        return {r.hash: r for r in map(_xorb, rows)}

    def add_xorb(self, record: XorbRecord) -> bool:
        """Record a xorb just stored; False when it was recorded already."""
        if self._session.get(Xorb, record.hash.hex) is not None:
            return False
        self._session.add(
            Xorb(
                hash=record.hash.hex,
                blake3=record.blake3.hex,
                size=record.size,
                chunk_count=len(record.chunks),
                chunks=pack_index(record.chunks),
                created_ms=now_ms(),
            )
        )
        return True

    def file(self, file: XetHash) -> XetFileRecord | None:
        row = self._session.get(XetFile, file.hex)
        return None if row is None else _file(row)

    def files_of(self, digests: Iterable[Digest]) -> dict[Digest, XetFileRecord]:
        """The Xet files with these bytes, of those that were uploaded through Xet."""
        wanted = {d.hex for d in digests}
        if not wanted:
            return {}
        rows = self._session.exec(select(XetFile).where(col(XetFile.blake3).in_(wanted))).all()
        return {r.blake3: r for r in map(_file, rows)}

    def file_of(self, digest: Digest) -> XetFileRecord | None:
        """The Xet file with these bytes (by their BLAKE3), if one was uploaded."""
        row = self._session.exec(select(XetFile).where(XetFile.blake3 == digest.hex)).first()
        return None if row is None else _file(row)

    def servable_hashes(self, digests: Iterable[Digest]) -> dict[Digest, XetHash]:
        """The Xet hash of each of these blobs that was uploaded through Xet and whose xorbs
        are all held here (a replica may lack some), none of them held by a scrub."""
        wanted = {d.hex for d in digests}
        lacking = (
            select(XetFileXorb.file)
            .where(XetFileXorb.file == XetFile.hash)
            .where(
                col(XetFileXorb.xorb).not_in(select(Xorb.hash))
                | col(XetFileXorb.blake3).in_(select(BlobQuarantine.blake3))
            )
        )
        rows = self._session.exec(
            select(XetFile.blake3, XetFile.hash)
            .where(col(XetFile.blake3).in_(wanted))
            .where(~lacking.exists())
        ).all()
        return {Digest(b3): XetHash.parse(h) for b3, h in rows}

    def file_in_repo(self, file: XetHash, repo_id: int) -> bool:
        """Whether a commit of the repo names the file."""
        query = (
            select(TreeRow.commit_id)
            .join(XetFile, col(XetFile.blake3) == TreeRow.blake3)
            .join(Commit, col(Commit.id) == TreeRow.commit_id)
            .where(XetFile.hash == file.hex, Commit.repo_id == repo_id)
        )
        return self._session.exec(query.limit(1)).first() is not None

    def latest_files(self, repo_id: int, limit: int) -> list[XetFileRecord]:
        """The Xet files a commit of the repo names, the latest uploaded first."""
        named = (
            select(TreeRow.blake3)
            .join(Commit, col(Commit.id) == TreeRow.commit_id)
            .where(Commit.repo_id == repo_id)
        )
        rows = self._session.exec(
            select(XetFile)
            .where(col(XetFile.blake3).in_(named))
            .order_by(col(XetFile.created_ms).desc())
            .limit(limit)
        ).all()
        return [_file(r) for r in rows]

    def add_file(self, record: XetFileRecord, xorbs: Iterable[XorbRef]) -> bool:
        """Record a Xet file and the xorbs (blobs) it names; False when it was already."""
        if self._session.get(XetFile, record.hash.hex) is not None:
            return False
        self._session.add(
            XetFile(
                hash=record.hash.hex,
                blake3=record.blake3.hex,
                sha256=record.sha256,
                size=record.size,
                terms=pack_terms(record.terms),
                created_ms=now_ms(),
            )
        )
        rows = [
            {"file": record.hash.hex, "xorb": x.hash.hex, "blake3": x.blake3.hex, "size": x.size}
            for x in {x.hash: x for x in xorbs}.values()
        ]
        if rows:
            self._session.execute(insert(XetFileXorb), rows)
        return True

    def missing_xorbs(self, file: XetHash) -> list[XorbRef]:
        """The xorbs of a file that are not held here (what a replica fetches)."""
        rows = self._session.exec(
            select(XetFileXorb)
            .where(XetFileXorb.file == file.hex)
            .where(col(XetFileXorb.xorb).not_in(select(Xorb.hash)))
        ).all()
        return [XorbRef(XetHash.parse(r.xorb), Digest(r.blake3), r.size) for r in rows]

    def wanted_xorbs(self, blob: Digest) -> list[XetHash]:
        """The xorbs some file names whose bytes are this blob, and that are not held yet."""
        rows = self._session.exec(
            select(XetFileXorb.xorb)
            .where(XetFileXorb.blake3 == blob.hex)
            .where(col(XetFileXorb.xorb).not_in(select(Xorb.hash)))
            .distinct()
        ).all()
        return [XetHash.parse(h) for h in rows]

    def files_naming(self, xorb: XetHash) -> list[XetFileRecord]:
        rows = self._session.exec(
            select(XetFile)
            .join(XetFileXorb, col(XetFileXorb.file) == XetFile.hash)
            .where(XetFileXorb.xorb == xorb.hex)
        ).all()
        return [_file(r) for r in rows]

    def index_chunks(self, chunks: Iterable[tuple[XetHash, XetHash]]) -> None:
        """Add (chunk, xorb) pairs to the global-dedup index; a chunk indexed already keeps
        the xorb it has."""
        pairs = {c.hex: x.hex for c, x in chunks}
        known = set(
            self._session.exec(select(XetChunk.hash).where(col(XetChunk.hash).in_(pairs))).all()
        )
        rows = [{"hash": c, "xorb": x} for c, x in pairs.items() if c not in known]
        if rows:
            self._session.execute(insert(XetChunk), rows)

    def xorb_of_chunk(self, chunk: XetHash) -> XetHash | None:
        row = self._session.get(XetChunk, chunk.hex)
        return None if row is None else XetHash.parse(row.xorb)

    def xorb_blobs(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these blobs are the bytes of a xorb (held, or named by a recipe)."""
        wanted = {d.hex for d in digests}
        held = select(Xorb.blake3).where(col(Xorb.blake3).in_(wanted))
        named = select(XetFileXorb.blake3).where(col(XetFileXorb.blake3).in_(wanted))
        found = self._session.exec(held.union(named)).all()  # type: ignore[call-overload]
        return {Digest(h) for (h,) in found}

    def forget_files(self, blobs: Iterable[Digest]) -> set[Digest]:
        """Drop the recipes of the Xet files with these bytes (collected); returns the blobs
        of the xorbs they named."""
        wanted = {d.hex for d in blobs}
        files = self._session.exec(select(XetFile.hash).where(col(XetFile.blake3).in_(wanted)))
        hashes = set(files.all())
        if not hashes:
            return set()
        named = self._session.exec(
            select(XetFileXorb.blake3).where(col(XetFileXorb.file).in_(hashes))
        ).all()
        self._session.execute(delete(XetFileXorb).where(col(XetFileXorb.file).in_(hashes)))
        self._session.execute(delete(XetFile).where(col(XetFile.hash).in_(hashes)))
        return {Digest(h) for h in named}

    def forget_xorbs(self, blobs: Iterable[Digest]) -> None:
        """Drop the xorbs whose bytes these blobs were (collected), and their dedup entries."""
        wanted = {d.hex for d in blobs}
        hashes = set(self._session.exec(select(Xorb.hash).where(col(Xorb.blake3).in_(wanted))))
        if hashes:
            self._session.execute(delete(XetChunk).where(col(XetChunk.xorb).in_(hashes)))
            self._session.execute(delete(Xorb).where(col(Xorb.hash).in_(hashes)))
