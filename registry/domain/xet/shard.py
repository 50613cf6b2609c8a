"""Shard bytes (xet-protocol.md §3.6, §3.8): reading an upload shard record by record,
writing one (tests), and writing the global-dedup answer shard with its lookup tables and
footer. Every record is 48 bytes, little-endian; hashes are raw bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from registry.domain.errors import TooLargeError, XetInvalidError
from registry.domain.xet.hashes import hmac_hash
from registry.domain.xet.types import HASH_BYTES, Term, XetHash

SHARD_TAG = bytes.fromhex("48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa9")
HEADER_VERSION = 2
FOOTER_VERSION = 1
RECORD_BYTES = 48
FOOTER_BYTES = 200
MAX_SHARD_BYTES = 64 * 1024 * 1024
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
# A chunk is eligible for global dedup when the last 8 bytes of its hash, as a u64, are a
# multiple of this (or it starts a file, or its flags say so: the client decides those).
DEDUP_MODULUS = 1024

_HEADER = struct.Struct("<32sQQ")
_FILE_HEADER = struct.Struct("<32sII8x")  # file hash, flags, number of terms
_TERM = struct.Struct("<32sIIII")  # xorb, flags, unpacked bytes, chunk start, chunk end
_HASH_RECORD = struct.Struct("<32s16x")  # a verification hash, or the sha256 extension
_XORB_HEADER = struct.Struct("<32sIIII")  # xorb, flags, chunks, unpacked bytes, bytes on disk
_XORB_CHUNK = struct.Struct("<32sIIII")  # chunk hash, unpacked start, length, flags, unused
_BOOKEND_HASH = b"\xff" * HASH_BYTES
_BOOKEND = _BOOKEND_HASH + bytes(RECORD_BYTES - HASH_BYTES)
_LOOKUP = struct.Struct("<QI")  # truncated hash, record index
_CHUNK_LOOKUP = struct.Struct("<QII")  # truncated chunk hash, xorb record index, chunk position
# version, file info, xorb info, file lookup (offset, count), xorb lookup (offset, count),
# chunk lookup (offset, count), HMAC key, creation, expiry, 6 reserved, stored bytes on
# disk, materialized bytes, stored bytes, footer offset.
_FOOTER = struct.Struct("<9Q32s2Q48x4Q")

ChunkRecord = tuple[XetHash, int, int, int]


@dataclass(frozen=True, slots=True)
class ShardFile:
    """A file of a shard: its hash, its terms, one verification hash per term (None when
    the shard carries none) and the sha256 the client claims, as normal lowercase hex."""

    file_hash: XetHash
    terms: tuple[Term, ...]
    verifications: tuple[XetHash, ...] | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class ShardXorb:
    """A xorb as a shard lists it: (chunk hash, uncompressed start, length, flags) per chunk.
    A client's claim, never trusted: the server has its own index of the xorb."""

    xorb: XetHash
    chunks: tuple[ChunkRecord, ...]


@dataclass(frozen=True, slots=True)
class UploadShard:
    files: tuple[ShardFile, ...]
    xorbs: tuple[ShardXorb, ...]


def is_dedup_eligible(h: XetHash) -> bool:
    """Whether the server indexes this chunk hash for global dedup."""
    return int.from_bytes(h.raw[24:32], "little") % DEDUP_MODULUS == 0


def parse_shard(data: bytes | memoryview) -> UploadShard:
    """The files and xorbs of an uploaded shard, read one record at a time: a declared count
    only says how many records to read next, and reading stops at the end of the body.

    Raises:
        TooLargeError: the body is over 64 MiB.
        XetInvalidError: a wrong tag or version, a section cut short or missing its bookend,
            bytes after the xorb section of a shard that declares no footer.
    """
    view = memoryview(data)
    if len(view) > MAX_SHARD_BYTES:
        raise TooLargeError(
            f"A shard is at most {MAX_SHARD_BYTES} bytes",
            detail={"size": len(view), "limit": MAX_SHARD_BYTES},
        )
    reader = _Reader(view)
    footer_size = _read_header(reader)
    files = tuple(_read_files(reader))
    xorbs = tuple(_read_xorbs(reader))
    if footer_size == 0 and reader.remaining:
        raise XetInvalidError(
            "Bytes after the xorb section of a shard without footer",
            detail={"offset": reader.offset, "size": len(view)},
        )
    return UploadShard(files, xorbs)


class _Reader:
    """A cursor over a shard body that hands out 48-byte records and never reads past it."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._view) - self.offset

    def record(self, what: str) -> memoryview:
        if self.remaining < RECORD_BYTES:
            raise XetInvalidError(
                f"Shard ends inside {what}",
                detail={"offset": self.offset, "size": len(self._view)},
            )
        start = self.offset
        self.offset += RECORD_BYTES
        return self._view[start : self.offset]

    def expect(self, count: int, what: str) -> None:
        """Refuse at once a declared count of records the rest of the body cannot hold."""
        if count * RECORD_BYTES > self.remaining:
            raise XetInvalidError(
                f"Shard declares {count} {what}, more than the rest of the body holds",
                detail={"offset": self.offset, "count": count, "remaining": self.remaining},
            )


def _read_header(reader: _Reader) -> int:
    """Check the shard header; return its footer size."""
    tag, version, footer_size = _HEADER.unpack(reader.record("the shard header"))
    if tag != SHARD_TAG:
        raise XetInvalidError("Not a shard: wrong header tag")
    if version != HEADER_VERSION:
        raise XetInvalidError(
            f"Unsupported shard version (expected {HEADER_VERSION})", detail={"version": version}
        )
    return int(footer_size)


def _read_files(reader: _Reader) -> Iterator[ShardFile]:
    while not _is_bookend(record := reader.record("the file section")):
        yield _read_file(reader, record)


def _read_file(reader: _Reader, header: memoryview) -> ShardFile:
    raw_hash, flags, count = _FILE_HEADER.unpack(header)
    file_hash = XetHash(raw_hash)
    verified = bool(flags & FLAG_VERIFICATION)
    with_sha256 = bool(flags & FLAG_METADATA_EXT)
    reader.expect(count * (2 if verified else 1) + with_sha256, f"records for file {file_hash}")
    terms = tuple(_read_term(reader) for _ in range(count))
    verifications = (
        tuple(_read_hash(reader, "a verification record") for _ in range(count))
        if verified
        else None
    )
    # The sha256 is stored in hash byte order: its string form is the usual hex digest.
    sha256 = _read_hash(reader, "a metadata extension").hex if with_sha256 else None
    return ShardFile(file_hash, terms, verifications, sha256)


def _read_term(reader: _Reader) -> Term:
    xorb, _flags, length, start, end = _TERM.unpack(reader.record("a term"))
    return Term(XetHash(xorb), start, end, length)


def _read_hash(reader: _Reader, what: str) -> XetHash:
    (raw,) = _HASH_RECORD.unpack(reader.record(what))
    return XetHash(raw)


def _read_xorbs(reader: _Reader) -> Iterator[ShardXorb]:
    while not _is_bookend(record := reader.record("the xorb section")):
        raw_hash, _flags, count, _unpacked, _on_disk = _XORB_HEADER.unpack(record)
        xorb = XetHash(raw_hash)
        reader.expect(count, f"chunks for xorb {xorb}")
        yield ShardXorb(xorb, tuple(_read_chunk(reader) for _ in range(count)))


def _read_chunk(reader: _Reader) -> ChunkRecord:
    raw_hash, start, length, flags, _unused = _XORB_CHUNK.unpack(reader.record("a chunk"))
    return XetHash(raw_hash), start, length, flags


def _is_bookend(record: memoryview) -> bool:
    """A section ends with a record whose hash is all 0xFF (the reference checks no more)."""
    return record[:HASH_BYTES] == _BOOKEND_HASH


def build_shard(files: Sequence[ShardFile], xorbs: Sequence[ShardXorb]) -> bytes:
    """An upload shard as the client sends it: header with footer size 0, the file section,
    the xorb section, no footer. A file's flags follow what it carries."""
    parts = [_HEADER.pack(SHARD_TAG, HEADER_VERSION, 0)]
    for file in files:
        parts.extend(_file_records(file))
    parts.append(_BOOKEND)
    for xorb in xorbs:
        parts.extend(_xorb_records(xorb))
    parts.append(_BOOKEND)
    return b"".join(parts)


def _file_records(file: ShardFile) -> Iterator[bytes]:
    verifications = file.verifications
    if verifications is not None and len(verifications) != len(file.terms):
        raise ValueError("a file has one verification hash per term or none")
    flags = (FLAG_VERIFICATION if verifications is not None else 0) | (
        FLAG_METADATA_EXT if file.sha256 is not None else 0
    )
    yield _FILE_HEADER.pack(file.file_hash.raw, flags, len(file.terms))
    for t in file.terms:
        yield _TERM.pack(t.xorb.raw, 0, t.length, t.start, t.end)
    for v in verifications or ():
        yield _HASH_RECORD.pack(v.raw)
    if file.sha256 is not None:
        yield _HASH_RECORD.pack(XetHash.parse(file.sha256).raw)


def _xorb_records(xorb: ShardXorb) -> Iterator[bytes]:
    """A xorb block; its bytes-on-disk field is 0, as in real uploads."""
    unpacked = sum(length for _, _, length, _ in xorb.chunks)
    yield _XORB_HEADER.pack(xorb.xorb.raw, 0, len(xorb.chunks), unpacked, 0)
    for h, start, length, flags in xorb.chunks:
        yield _XORB_CHUNK.pack(h.raw, start, length, flags, 0)


def dedup_shard(
    xorbs: Sequence[tuple[XetHash, Sequence[tuple[XetHash, int]]]],
    key: bytes | None,
    created: int,
    expiry: int,
) -> bytes:
    """The answer to a global-dedup query: a full shard (footer and lookup tables, which the
    client requires) listing every chunk of each xorb given as (hash, length) in order.

    With a `key`, each chunk hash is shown as `hmac_hash(key, hash)` and the key goes into
    the footer, so the answer proves nothing about raw chunk hashes to its reader.
    `created` and `expiry` are Unix seconds; the client drops the shard after `expiry`.
    """
    if key is not None and (len(key) != HASH_BYTES or key == bytes(HASH_BYTES)):
        raise ValueError("an HMAC key is 32 bytes, not all zero")
    blocks = [_dedup_block(xorb, chunks, key) for xorb, chunks in xorbs]
    xorb_section = b"".join(b"".join(_xorb_records(block)) for block in blocks) + _BOOKEND
    xorb_lookup, chunk_lookup = _lookups(blocks)
    xorb_info_offset = _HEADER.size + len(_BOOKEND)
    lookup_offset = xorb_info_offset + len(xorb_section)
    chunk_lookup_offset = lookup_offset + len(xorb_lookup) * _LOOKUP.size
    footer_offset = chunk_lookup_offset + len(chunk_lookup) * _CHUNK_LOOKUP.size
    footer = _FOOTER.pack(
        FOOTER_VERSION,
        _HEADER.size,  # file info: the bookend alone
        xorb_info_offset,
        lookup_offset,  # file lookup: empty
        0,
        lookup_offset,
        len(xorb_lookup),
        chunk_lookup_offset,
        len(chunk_lookup),
        key or bytes(HASH_BYTES),
        created,
        expiry,
        0,  # stored bytes on disk: not known from the chunk lists
        0,  # materialized bytes: no files
        sum(length for _, chunks in xorbs for _, length in chunks),
        footer_offset,
    )
    return b"".join(
        [
            _HEADER.pack(SHARD_TAG, HEADER_VERSION, FOOTER_BYTES),
            _BOOKEND,
            xorb_section,
            *(_LOOKUP.pack(*entry) for entry in xorb_lookup),
            *(_CHUNK_LOOKUP.pack(*entry) for entry in chunk_lookup),
            footer,
        ]
    )


def _dedup_block(
    xorb: XetHash, chunks: Sequence[tuple[XetHash, int]], key: bytes | None
) -> ShardXorb:
    """A xorb block of a dedup answer: uncompressed offsets, flags 0, hashes keyed if asked."""
    records: list[ChunkRecord] = []
    start = 0
    for h, length in chunks:
        records.append((hmac_hash(key, h) if key else h, start, length, 0))
        start += length
    return ShardXorb(xorb, tuple(records))


def _lookups(
    blocks: Sequence[ShardXorb],
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """The xorb lookup (truncated xorb hash, record index) and the chunk lookup (truncated
    chunk hash as listed, record index of its xorb, position in it), each sorted. A record
    index counts 48-byte records from the start of the xorb section."""
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    index = 0
    for block in blocks:
        xorb_lookup.append((_truncated(block.xorb), index))
        chunk_lookup.extend(
            (_truncated(h), index, position) for position, (h, _, _, _) in enumerate(block.chunks)
        )
        index += 1 + len(block.chunks)
    return sorted(xorb_lookup), sorted(chunk_lookup)


def _truncated(h: XetHash) -> int:
    """The lookup-table key of a hash: its first 8 bytes as a little-endian u64."""
    return int.from_bytes(h.raw[:8], "little")
