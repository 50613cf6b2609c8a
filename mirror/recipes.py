"""Xet files in a mirror bucket (docs/s3-layout.md): the documents that describe them, and the
reading of a file's bytes back from its xorbs. No I/O here: the bucket passes in how to read a
document and a byte range of a blob.

A file the node holds as Xet xorbs goes to a bucket as those xorbs (ordinary blobs, named by
BLAKE3), one chunk index per xorb (`xet/xorbs/{blake3}.json`) and one recipe per file
(`xet/files/{blake3}.json`, its terms over the xorbs). A second version of a file shares the
xorbs of the first and adds only the xorbs of what changed.

Theory of operation (what a reader trusts: nothing in the bucket). A chunk index must describe
contiguous chunks that fill its xorb exactly and aggregate to the Xet hash the recipe names
for that xorb; each chunk read is decoded (under the size ceiling of `decode_chunk`) and must
hash to its index entry before a byte of it is handed on. So every byte handed on belongs to a
chunk of a xorb with that Xet hash. The recipe's terms are checked against its size and the
indexes (`segments`); a recipe naming the wrong chunks yields bytes that fail the caller's
whole-file BLAKE3 check (the downloader's, the node's), never a file taken for good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from registry.domain.digest import Digest, is_sha256
from registry.domain.errors import DigestMismatchError, XetInvalidError
from registry.domain.records import XorbRecord
from registry.domain.xet.hashes import chunk_hash, file_hash, xorb_hash
from registry.domain.xet.reconstruct import segments
from registry.domain.xet.types import ChunkEntry, Term, XetHash, XorbRef
from registry.domain.xet.xorb import (
    HEADER_BYTES,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_XORB_BYTES,
    decode_chunk,
)
from registry.storage.xet import Recipe

FILE_FORMAT = "modelyard.xet-file/1"
XORB_FORMAT = "modelyard.xet-xorb/1"

ReadRange = Callable[[Digest, int, int], bytes]  # bytes [start, end) of a blob


@dataclass(frozen=True)
class BucketRecipe:
    """A Xet file as its recipe document describes it: the file's hashes and size, its terms,
    and each xorb the terms name (a blob of `size` bytes named by its BLAKE3)."""

    blake3: str
    sha256: str
    size: int
    hash: XetHash
    terms: tuple[Term, ...]
    xorbs: Mapping[XetHash, XorbRef]


# -- writing ------------------------------------------------------------------------------


def file_document(blake3_hex: str, sha256: str, recipe: Recipe) -> dict[str, object]:
    """The recipe document of a file the node holds as `recipe` (every xorb with its chunks).

    Its Xet hash is computed from the chunks the terms name, which also checks that they do.

    Raises:
        XetInvalidError: a term names chunks its xorb does not have.
    """
    leaves = [(c.hash, c.length) for term in recipe.terms for c in _term_chunks(recipe, term)]
    used = list(dict.fromkeys(term.xorb for term in recipe.terms))  # in order of first use
    return {
        "format": FILE_FORMAT,
        "blake3": blake3_hex,
        "sha256": sha256,
        "size": recipe.size,
        "xet_hash": file_hash(leaves).hex,
        "terms": [
            {"xorb": t.xorb.hex, "start": t.start, "end": t.end, "length": t.length}
            for t in recipe.terms
        ],
        "xorbs": [
            {"hash": h.hex, "blake3": recipe.xorbs[h].blake3.hex, "size": recipe.xorbs[h].size}
            for h in used
        ],
    }


def xorb_document(xorb: XorbRecord) -> dict[str, object]:
    """The chunk index of a xorb: per chunk [hash, start, end, length], where [start, end) are
    its serialized bytes (8-byte header and payload) in the xorb and length its decoded size."""
    return {
        "format": XORB_FORMAT,
        "hash": xorb.hash.hex,
        "blake3": xorb.blake3.hex,
        "size": xorb.size,
        "chunks": [[c.hash.hex, c.start, c.end, c.length] for c in xorb.chunks],
    }


def _term_chunks(recipe: Recipe, term: Term) -> Sequence[ChunkEntry]:
    xorb = recipe.xorbs.get(term.xorb)
    if xorb is None or not 0 <= term.start < term.end <= len(xorb.chunks):
        raise XetInvalidError(
            "A term names chunks its xorb does not have",
            detail={"xorb": term.xorb.hex, "start": term.start, "end": term.end},
        )
    return xorb.chunks[term.start : term.end]


# -- reading ------------------------------------------------------------------------------


def parse_file_document(document: object, blake3_hex: str, size: int) -> BucketRecipe:
    """The recipe of the file with these bytes, checked against what the caller expects.

    Raises:
        XetInvalidError: not a recipe document, another file's, a size other than `size`, or
            terms that do not add up to it or name unlisted xorbs.
    """
    doc = _Fields(document, "recipe")
    if doc.text("format") != FILE_FORMAT:
        raise doc.invalid("format", "an unknown format")
    if doc.text("blake3") != blake3_hex:
        raise doc.invalid("blake3", f"another file than blake3:{blake3_hex}")
    if doc.integer("size") != size:
        raise doc.invalid("size", f"another size than {size}")
    sha256 = doc.text("sha256")
    if not is_sha256(sha256):
        raise doc.invalid("sha256", "not 64 hex digits")
    xorbs = {x.hash: x for x in map(_xorb_ref, doc.items("xorbs"))}
    terms = tuple(map(_term, doc.items("terms")))
    if sum(t.length for t in terms) != size or any(t.xorb not in xorbs for t in terms):
        raise doc.invalid("terms", "terms that do not add up to the file or name unlisted xorbs")
    return BucketRecipe(blake3_hex, sha256, size, _xet_hash(doc, "xet_hash"), terms, xorbs)


def parse_xorb_document(document: object, xorb: XorbRef) -> tuple[ChunkEntry, ...]:
    """The chunks of a xorb from its index, checked to fill the xorb exactly and to aggregate
    to its Xet hash.

    Raises:
        XetInvalidError: not that xorb's chunk index, or chunks that do not fit or hash.
    """
    doc = _Fields(document, "chunk index")
    if doc.text("format") != XORB_FORMAT:
        raise doc.invalid("format", "an unknown format")
    if (_xet_hash(doc, "hash"), doc.text("blake3"), doc.integer("size")) != (
        xorb.hash,
        xorb.blake3.hex,
        xorb.size,
    ):
        raise doc.invalid("hash", f"another xorb than {xorb.hash}")
    chunks = tuple(_chunk(row) for row in doc.items("chunks"))
    ends = [0, *(c.end for c in chunks)]
    if not 0 < len(chunks) <= MAX_CHUNKS or ends[-1] != xorb.size:
        raise doc.invalid("chunks", f"not 1 to {MAX_CHUNKS} chunks filling the xorb")
    if any(c.start != end for c, end in zip(chunks, ends, strict=False)):
        raise doc.invalid("chunks", "chunks that are not contiguous")
    if xorb_hash([(c.hash, c.length) for c in chunks]) != xorb.hash:
        raise doc.invalid("chunks", f"chunks that do not aggregate to {xorb.hash}")
    return chunks


class ChunkIndexes(Mapping[XetHash, Sequence[ChunkEntry]]):
    """The chunk index of each xorb of a recipe, loaded when first looked up: a range read
    loads only the indexes of the xorbs it touches."""

    def __init__(
        self, recipe: BucketRecipe, load: Callable[[XorbRef], Sequence[ChunkEntry]]
    ) -> None:
        self._xorbs = recipe.xorbs
        self._load = load

    def __getitem__(self, xorb: XetHash) -> Sequence[ChunkEntry]:
        return self._load(self._xorbs[xorb])

    def __iter__(self) -> Iterator[XetHash]:
        return iter(self._xorbs)

    def __len__(self) -> int:
        return len(self._xorbs)


def read_file(
    recipe: BucketRecipe,
    chunks_of: Mapping[XetHash, Sequence[ChunkEntry]],
    read: ReadRange,
    start: int = 0,
    end: int | None = None,
) -> Iterator[bytes]:
    """Bytes [start, end) of the file, one bounded xorb read at a time (`segments`: at most 64
    chunks, about 8 MiB), each chunk decoded and checked against its hash first.

    Raises:
        DigestMismatchError: a chunk read does not hash to its index entry.
        XetInvalidError: a chunk is malformed, or the recipe disagrees with its indexes.
    """
    end = recipe.size if end is None else min(end, recipe.size)
    if start >= end:
        return
    for segment in segments(recipe.terms, chunks_of, recipe.size, start, end - 1):
        xorb = recipe.xorbs[segment.xorb]
        data = memoryview(read(xorb.blake3, segment.byte_start, segment.byte_end))
        if len(data) != segment.byte_end - segment.byte_start:
            raise DigestMismatchError(
                f"Xorb {xorb.hash} read {len(data)} bytes at {segment.byte_start}, "
                f"not {segment.byte_end - segment.byte_start}"
            )
        base = segment.byte_start
        decoded = b"".join(
            _verified(xorb, data[c.start - base : c.end - base], c) for c in segment.chunks
        )
        yield decoded[segment.skip : segment.skip + segment.take]


def _verified(xorb: XorbRef, serialized: memoryview, chunk: ChunkEntry) -> bytes:
    data = decode_chunk(serialized)
    if chunk_hash(data) != chunk.hash:
        raise DigestMismatchError(
            f"A chunk of xorb {xorb.hash} at byte {chunk.start} does not match its hash",
            detail={"xorb": xorb.hash.hex, "offset": chunk.start},
        )
    return data


# -- parsing helpers ----------------------------------------------------------------------


class _Fields:
    """A JSON object of a bucket document, read field by field with its type checked."""

    def __init__(self, document: object, what: str) -> None:
        self._what = what
        if not isinstance(document, dict):
            raise self.invalid("", "not a JSON object")
        self._doc: dict[str, object] = document

    def invalid(self, field: str, why: str) -> XetInvalidError:
        where = f": {field!r} is" if field else " is"
        return XetInvalidError(f"A Xet {self._what} in the bucket{where} {why}")

    def _get(self, field: str) -> object:
        if field not in self._doc:
            raise self.invalid(field, "missing")
        return self._doc[field]

    def text(self, field: str) -> str:
        value = self._get(field)
        if not isinstance(value, str):
            raise self.invalid(field, "not a string")
        return value

    def integer(self, field: str, low: int = 0, high: int | None = None) -> int:
        value = self._get(field)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            raise self.invalid(field, "not an integer in range")
        return value

    def items(self, field: str) -> list[object]:
        value = self._get(field)
        if not isinstance(value, list):
            raise self.invalid(field, "not a list")
        return value


def _xet_hash(doc: _Fields, field: str) -> XetHash:
    return XetHash.parse(doc.text(field))


def _xorb_ref(item: object) -> XorbRef:
    doc = _Fields(item, "recipe's xorb")
    blake3_hex = doc.text("blake3")
    if not is_sha256(blake3_hex):  # the same shape: 64 lowercase hex digits
        raise doc.invalid("blake3", "not 64 hex digits")
    size = doc.integer("size", 1, MAX_XORB_BYTES)
    return XorbRef(_xet_hash(doc, "hash"), Digest(blake3_hex), size)


def _term(item: object) -> Term:
    doc = _Fields(item, "recipe's term")
    start = doc.integer("start", 0, MAX_CHUNKS - 1)
    end = doc.integer("end", start + 1, MAX_CHUNKS)
    length = doc.integer("length", 1, (end - start) * MAX_CHUNK_BYTES)
    return Term(_xet_hash(doc, "xorb"), start, end, length)


def _chunk(row: object) -> ChunkEntry:
    if (
        not isinstance(row, list)
        or len(row) != 4
        or not isinstance(row[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:])
    ):
        raise XetInvalidError("A chunk of a Xet chunk index in the bucket is not [hash, 3 ints]")
    text, start, end, length = row
    if not (0 <= start and start + HEADER_BYTES < end <= MAX_XORB_BYTES):
        raise XetInvalidError("A chunk of a Xet chunk index in the bucket has no room")
    if not 0 < length <= MAX_CHUNK_BYTES:
        raise XetInvalidError("A chunk of a Xet chunk index in the bucket is too long")
    return ChunkEntry(XetHash.parse(text), start, end, length)
