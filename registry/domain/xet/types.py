"""Values shared by the Xet formats: a hash in its string form, a chunk of a stored xorb,
a term of a file."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from registry.domain.digest import Digest
from registry.domain.errors import XetInvalidError

HASH_BYTES = 32
_WORDS = struct.Struct("<4Q")
_BIG_WORDS = struct.Struct(">4Q")


@dataclass(frozen=True, slots=True)
class XetHash:
    """32 raw bytes. Its string form (paths, JSON, headers) is not plain hex: each 8-byte
    word is read little-endian and printed as 16 hex digits."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != HASH_BYTES:
            raise ValueError(f"a Xet hash is {HASH_BYTES} bytes, got {len(self.raw)}")

    @classmethod
    def parse(cls, text: str) -> XetHash:
        """The hash from its string form (64 lowercase hex digits).

        Raises:
            XetInvalidError: not 64 lowercase hex digits.
        """
        if len(text) != 2 * HASH_BYTES or text.strip("0123456789abcdef"):
            raise XetInvalidError(
                "A Xet hash is 64 lowercase hex digits", detail={"hash": text[:80]}
            )
        return cls(_WORDS.pack(*_BIG_WORDS.unpack(bytes.fromhex(text))))

    @property
    def hex(self) -> str:
        return _BIG_WORDS.pack(*_WORDS.unpack(self.raw)).hex()

    def __str__(self) -> str:
        return self.hex


ZERO = XetHash(bytes(HASH_BYTES))


@dataclass(frozen=True, slots=True)
class ChunkEntry:
    """One chunk of a stored xorb: its hash, where its serialized bytes (8-byte header and
    payload) lie in the xorb, [start, end), and its uncompressed length."""

    hash: XetHash
    start: int
    end: int
    length: int


@dataclass(frozen=True, slots=True)
class Term:
    """A run of chunks [start, end) of one xorb; `length` is their uncompressed bytes."""

    xorb: XetHash
    start: int
    end: int
    length: int


_ENTRY = struct.Struct("<32sIII")


def pack_index(chunks: Sequence[ChunkEntry]) -> bytes:
    """A xorb's chunk list as bytes (44 per chunk), as the metadata keeps it."""
    return b"".join(_ENTRY.pack(c.hash.raw, c.start, c.end, c.length) for c in chunks)


def unpack_index(data: bytes) -> list[ChunkEntry]:
    if len(data) % _ENTRY.size:
        raise ValueError("a chunk index is a whole number of 44-byte entries")
    return [
        ChunkEntry(XetHash(h), start, end, length)
        for h, start, end, length in _ENTRY.iter_unpack(data)
    ]


_TERM = struct.Struct("<32sIII")


def pack_terms(terms: Sequence[Term]) -> bytes:
    """A file's terms as bytes (44 per term), as the metadata keeps them."""
    return b"".join(_TERM.pack(t.xorb.raw, t.start, t.end, t.length) for t in terms)


def unpack_terms(data: bytes) -> list[Term]:
    if len(data) % _TERM.size:
        raise ValueError("a term list is a whole number of 44-byte entries")
    return [Term(XetHash(x), start, end, n) for x, start, end, n in _TERM.iter_unpack(data)]


@dataclass(frozen=True, slots=True)
class XorbRef:
    """A xorb as a replica fetches it: a blob of `size` bytes named by its BLAKE3."""

    hash: XetHash
    blake3: Digest
    size: int
