"""Xorb bytes (xet-protocol.md §3.5): a sequence of chunks, each an 8-byte header and its
payload, no footer. `parse_xorb` runs every check a CAS must make on an uploaded xorb before
storing it; `decode_chunk` decodes one stored chunk; the serializers make xorbs (tests,
server-made xorbs)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import lz4.frame  # type: ignore[import-untyped]  # lz4 ships no type stubs

from registry.domain.errors import TooLargeError, XetInvalidError, XorbHashMismatchError
from registry.domain.xet.chunking import MAX_CHUNK
from registry.domain.xet.hashes import chunk_hash, xorb_hash
from registry.domain.xet.types import ChunkEntry, XetHash

MAX_CHUNKS = 8192
MAX_CHUNK_BYTES = MAX_CHUNK
HEADER_BYTES = 8
# hf_xet fills a xorb with up to 64 MiB of chunk payloads; each chunk adds its header on the
# wire, so a xorb of incompressible chunks is up to 64 KiB over 64 MiB (one in eight was).
MAX_XORB_BYTES = 64 * 1024 * 1024 + MAX_CHUNKS * HEADER_BYTES

SCHEME_NONE = 0
SCHEME_LZ4 = 1
SCHEME_BG4_LZ4 = 2
SCHEMES = (SCHEME_NONE, SCHEME_LZ4, SCHEME_BG4_LZ4)

# Little-endian header: version u8, payload length u24, scheme u8, uncompressed length u24;
# read as two u32 words, each a u8 in its low byte and a u24 above it.
_HEADER = struct.Struct("<II")
_U24_LIMIT = 1 << 24


@dataclass(frozen=True, slots=True)
class _ChunkHeader:
    """A walked chunk header: chunk `index` starts at `offset` (its header), its payload
    ends at `end`; `length` is its uncompressed length."""

    index: int
    offset: int
    end: int
    scheme: int
    length: int


def parse_xorb(data: bytes | memoryview, expected: XetHash) -> list[ChunkEntry]:
    """Check a whole uploaded xorb and return its chunk index (`XorbReader`, fed at once)."""
    reader = XorbReader()
    reader.feed(data)
    return reader.finish(expected)


class XorbReader:
    """Checks an uploaded xorb as its bytes arrive, so that it is received, checked and stored
    in one pass.

    Each `feed` counts the body against the size limit, then takes every chunk it completes:
    its header is checked, its payload decompressed under a ceiling of its declared length and
    hashed. `finish` refuses a body that ends inside a chunk and checks that the chunks
    aggregate to the xorb's name. At most one incomplete chunk is kept between feeds.

    Raises (from either):
        TooLargeError: the body is over 64 MiB.
        XetInvalidError: a malformed header, a payload past the end, an unknown version or
            scheme, no chunks or more than 8192, a chunk over 128 KiB, or a payload that does
            not decode to exactly its declared length.
        XorbHashMismatchError: the chunks do not aggregate to the expected hash.
    """

    def __init__(self) -> None:
        self.size = 0  # bytes fed
        self._rest = b""  # the bytes of an incomplete chunk, fed but not yet taken
        self._chunks: list[ChunkEntry] = []

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.size > MAX_XORB_BYTES:
            raise TooLargeError(
                f"A xorb is at most {MAX_XORB_BYTES} bytes",
                detail={"size": self.size, "limit": MAX_XORB_BYTES},
            )
        view = memoryview(self._rest + data) if self._rest else memoryview(data)
        base = self.size - len(view)  # offset of view[0] in the xorb
        taken = 0
        while len(view) - taken >= HEADER_BYTES:
            header = self._header(view, taken, base)
            if header.end - base > len(view):
                break
            payload = view[taken + HEADER_BYTES : header.end - base]
            self._chunks.append(
                ChunkEntry(
                    chunk_hash(_decode(payload, header)), header.offset, header.end, header.length
                )
            )
            taken = header.end - base
        self._rest = bytes(view[taken:])

    def finish(self, expected: XetHash) -> list[ChunkEntry]:
        """The chunk index, once the whole body was fed."""
        if self._rest:
            index, offset = len(self._chunks), self.size - len(self._rest)
            if len(self._rest) < HEADER_BYTES:
                raise _invalid("Truncated chunk header", index, offset, size=self.size)
            end = self._header(memoryview(self._rest), 0, offset).end
            raise _invalid(
                "Chunk payload runs past the end of the xorb",
                index,
                offset,
                end=end,
                size=self.size,
            )
        if not self._chunks:
            raise XetInvalidError("A xorb holds at least one chunk")
        received = xorb_hash([(c.hash, c.length) for c in self._chunks])
        if received != expected:
            raise XorbHashMismatchError(
                "The xorb's chunks do not hash to the xorb hash it was sent under",
                detail={"expected": str(expected), "received": str(received)},
            )
        return list(self._chunks)

    def _header(self, view: memoryview, at: int, base: int) -> _ChunkHeader:
        index = len(self._chunks)
        if index == MAX_CHUNKS:
            raise XetInvalidError(
                f"A xorb holds at most {MAX_CHUNKS} chunks",
                detail={"limit": MAX_CHUNKS, "offset": base + at},
            )
        return _read_header(view, at, index, base)


def decode_chunk(serialized: bytes | memoryview) -> bytes:
    """The uncompressed bytes of one serialized chunk (its header and payload, nothing more),
    decoded under the same ceiling and checks as `parse_xorb`.

    Raises:
        XetInvalidError: not exactly one well-formed chunk.
    """
    view = memoryview(serialized)
    if len(view) < HEADER_BYTES:
        raise _invalid("Truncated chunk header", 0, 0, size=len(view))
    header = _read_header(view, 0, 0, 0)
    if header.end != len(view):
        raise XetInvalidError(
            "Expected exactly one chunk",
            detail={"size": len(view), "chunk_end": header.end},
        )
    return _decode(view[HEADER_BYTES:], header)


def serialize_chunk(data: bytes, scheme: int = SCHEME_NONE) -> bytes:
    """One chunk as it goes into a xorb: header and payload, compressed with `scheme`
    (0 none, 1 LZ4 frame, 2 byte grouping then LZ4 frame)."""
    if not 0 < len(data) <= MAX_CHUNK_BYTES:
        raise ValueError(f"a chunk holds 1 to {MAX_CHUNK_BYTES} bytes, got {len(data)}")
    payload = _encode(data, scheme)
    if len(payload) >= _U24_LIMIT:
        raise ValueError(f"a chunk payload is under {_U24_LIMIT} bytes, got {len(payload)}")
    return _HEADER.pack(len(payload) << 8, scheme | len(data) << 8) + payload


def serialize_xorb(
    chunks: Sequence[bytes], scheme: int = SCHEME_NONE
) -> tuple[bytes, XetHash, list[ChunkEntry]]:
    """A xorb made of `chunks`, every one compressed with `scheme`: its bytes, its hash and
    its chunk index."""
    if not 0 < len(chunks) <= MAX_CHUNKS:
        raise ValueError(f"a xorb holds 1 to {MAX_CHUNKS} chunks, got {len(chunks)}")
    parts: list[bytes] = []
    entries: list[ChunkEntry] = []
    offset = 0
    for data in chunks:
        part = serialize_chunk(data, scheme)
        entries.append(ChunkEntry(chunk_hash(data), offset, offset + len(part), len(data)))
        parts.append(part)
        offset += len(part)
    return b"".join(parts), xorb_hash([(e.hash, e.length) for e in entries]), entries


def _invalid(message: str, index: int, offset: int, **detail: object) -> XetInvalidError:
    return XetInvalidError(message, detail={"chunk": index, "offset": offset, **detail})


def _read_header(view: memoryview, at: int, index: int, base: int) -> _ChunkHeader:
    """The header of chunk `index` at `view[at:]` (offset `base + at` in the xorb), checked
    against the format; where its payload ends is for the caller to check."""
    offset = base + at
    first, second = _HEADER.unpack_from(view, at)
    version, payload_length = first & 0xFF, first >> 8
    scheme, length = second & 0xFF, second >> 8
    end = offset + HEADER_BYTES + payload_length
    if version != 0:
        raise _invalid("Unknown chunk header version", index, offset, version=version)
    if scheme not in SCHEMES:
        raise _invalid("Unknown chunk compression scheme", index, offset, scheme=scheme)
    if not 0 < length <= MAX_CHUNK_BYTES:
        raise _invalid(f"A chunk holds 1 to {MAX_CHUNK_BYTES} bytes", index, offset, length=length)
    return _ChunkHeader(index, offset, end, scheme, length)


def _decode(payload: memoryview, header: _ChunkHeader) -> bytes:
    """A chunk's uncompressed bytes from its payload; never more than its declared length is
    produced."""
    if header.scheme == SCHEME_NONE:
        if len(payload) != header.length:
            raise _length_error(header, len(payload))
        return bytes(payload)
    data = _lz4_decode(payload, header)
    return _bg4_regroup(data) if header.scheme == SCHEME_BG4_LZ4 else data


def _lz4_decode(payload: memoryview, header: _ChunkHeader) -> bytes:
    """One LZ4 frame, decoded with an output ceiling of the declared length: a frame that
    would decode to more (a decompression bomb) stops there and is refused."""
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        data: bytes = decompressor.decompress(payload, max_length=header.length)
    except RuntimeError as exc:
        raise XetInvalidError(
            "Chunk payload is not a valid LZ4 frame",
            detail={"chunk": header.index, "offset": header.offset, "reason": str(exc)},
        ) from exc
    if not decompressor.eof:
        # Output stopped at the ceiling, or the frame is cut short.
        raise _length_error(header, None)
    if decompressor.unused_data or len(data) != header.length:
        raise _length_error(header, len(data))
    return data


def _length_error(header: _ChunkHeader, received: int | None) -> XetInvalidError:
    """A payload that does not decode to exactly the declared length; `received` is None
    when decoding stopped at the ceiling or in a cut-short frame."""
    return XetInvalidError(
        "Chunk payload does not decode to the length its header declares",
        detail={
            "chunk": header.index,
            "offset": header.offset,
            "declared": header.length,
            "received": "more, or a truncated frame" if received is None else received,
        },
    )


def _encode(data: bytes, scheme: int) -> bytes:
    if scheme == SCHEME_NONE:
        return data
    if scheme == SCHEME_LZ4:
        return bytes(lz4.frame.compress(data))
    if scheme == SCHEME_BG4_LZ4:
        return bytes(lz4.frame.compress(_bg4_group(data)))
    raise ValueError(f"unknown compression scheme {scheme}")


def _bg4_group(data: bytes) -> bytes:
    """Byte grouping: every byte at a position ≡ 0 mod 4, then ≡ 1, ≡ 2, ≡ 3 (floats
    compress better with their exponent bytes side by side)."""
    return b"".join(data[k::4] for k in range(4))


def _bg4_regroup(grouped: bytes) -> bytes:
    """Undo `_bg4_group`: the first `len % 4` groups hold one byte more than the others."""
    size = len(grouped)
    out = bytearray(size)
    start = 0
    for k in range(4):
        end = start + size // 4 + (k < size % 4)
        out[k::4] = grouped[start:end]
        start = end
    return bytes(out)
