"""The Xet documents of a mirror bucket (mirror/recipes.py): written from a node's recipe,
parsed back, and every byte range of a file rebuilt from real xorbs (all three compression
schemes); documents and xorb bytes that were tampered with yield errors, never bytes."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence

import blake3
import pytest

from mirror.recipes import (
    FILE_FORMAT,
    BucketRecipe,
    ChunkIndexes,
    file_document,
    parse_file_document,
    parse_xorb_document,
    read_file,
    xorb_document,
)
from registry.domain.digest import Digest
from registry.domain.errors import DigestMismatchError, XetInvalidError
from registry.domain.records import XorbRecord
from registry.domain.xet.hashes import chunk_hash, file_hash
from registry.domain.xet.types import ChunkEntry, Term, XetHash, XorbRef
from registry.domain.xet.xorb import (
    SCHEME_BG4_LZ4,
    SCHEME_LZ4,
    SCHEME_NONE,
    serialize_xorb,
)
from registry.storage.xet import Recipe

SHA = "ab" * 32


class Bucket:
    """Blobs by BLAKE3 and JSON documents, as a bucket holds them; counts range reads."""

    def __init__(self) -> None:
        self.blobs: dict[Digest, bytes] = {}
        self.reads: list[tuple[Digest, int, int]] = []
        self.indexes: dict[Digest, object] = {}

    def add(self, data: bytes) -> Digest:
        digest = Digest(blake3.blake3(data).hexdigest())
        self.blobs[digest] = data
        return digest

    def read(self, blob: Digest, start: int, end: int) -> bytes:
        self.reads.append((blob, start, end))
        return self.blobs[blob][start:end]

    def load(self, xorb: XorbRef) -> Sequence[ChunkEntry]:
        return parse_xorb_document(json.loads(json.dumps(self.indexes[xorb.blake3])), xorb)


def chunks(rng: random.Random, count: int) -> list[bytes]:
    """Chunks that compress (repeated text) and chunks that do not (random)."""
    return [
        (b"weights " * 2000)[: rng.randint(1, 16000)]
        if rng.random() < 0.5
        else rng.randbytes(rng.randint(1, 9000))
        for _ in range(count)
    ]


def stored_file(rng: random.Random, bucket: Bucket) -> tuple[bytes, Recipe]:
    """A file of 1-6 terms over 1-3 xorbs (one per scheme), its xorbs and indexes stored."""
    xorbs: list[tuple[XorbRecord, list[bytes]]] = []
    for scheme in rng.sample([SCHEME_NONE, SCHEME_LZ4, SCHEME_BG4_LZ4], rng.randint(1, 3)):
        parts = chunks(rng, rng.randint(1, 12))
        data, xet_hash, entries = serialize_xorb(parts, scheme)
        record = XorbRecord(xet_hash, bucket.add(data), len(data), tuple(entries))
        bucket.indexes[record.blake3] = xorb_document(record)
        xorbs.append((record, parts))
    terms, content = [], b""
    for _ in range(rng.randint(1, 6)):
        record, parts = rng.choice(xorbs)
        start = rng.randrange(len(parts))
        end = rng.randint(start + 1, len(parts))
        piece = b"".join(parts[start:end])
        terms.append(Term(record.hash, start, end, len(piece)))
        content += piece
    return content, Recipe(len(content), tuple(terms), {r.hash: r for r, _ in xorbs})


def recipe_of(content: bytes, recipe: Recipe) -> BucketRecipe:
    b3 = blake3.blake3(content).hexdigest()
    document = json.loads(json.dumps(file_document(b3, SHA, recipe)))
    return parse_file_document(document, b3, len(content))


def test_recipe_every_range_of_a_file_is_rebuilt_from_its_xorbs() -> None:
    rng = random.Random(7)
    for _ in range(40):
        bucket = Bucket()
        content, recipe = stored_file(rng, bucket)
        parsed = recipe_of(content, recipe)
        indexes = ChunkIndexes(parsed, bucket.load)
        assert b"".join(read_file(parsed, indexes, bucket.read)) == content
        for _ in range(20):
            start = rng.randrange(len(content))
            end = rng.randint(start, len(content) + 3)
            got = b"".join(read_file(parsed, indexes, bucket.read, start, end))
            assert got == content[start:end], (start, end)


def test_recipe_document_names_the_file_and_its_xorbs_once() -> None:
    bucket = Bucket()
    content, recipe = stored_file(random.Random(3), bucket)
    b3 = blake3.blake3(content).hexdigest()
    document = file_document(b3, SHA, recipe)
    leaves = [
        (c.hash, c.length)
        for t in recipe.terms
        for c in recipe.xorbs[t.xorb].chunks[t.start : t.end]
    ]
    assert document["format"] == FILE_FORMAT
    assert document["xet_hash"] == file_hash(leaves).hex
    named = [x["hash"] for x in document["xorbs"]]  # type: ignore[attr-defined]  # JSON list
    assert sorted(named) == sorted({t.xorb.hex for t in recipe.terms})
    parsed = recipe_of(content, recipe)
    assert parsed.terms == recipe.terms and parsed.size == len(content)
    assert {h: (x.blake3, x.size) for h, x in parsed.xorbs.items()} == {
        h: (recipe.xorbs[h].blake3, recipe.xorbs[h].size) for h in parsed.xorbs
    }


def test_recipe_range_read_touches_only_the_chunks_it_needs() -> None:
    bucket = Bucket()
    parts = [bytes([i]) * 10_000 for i in range(40)]
    data, xet_hash, entries = serialize_xorb(parts, SCHEME_NONE)
    record = XorbRecord(xet_hash, bucket.add(data), len(data), tuple(entries))
    bucket.indexes[record.blake3] = xorb_document(record)
    content = b"".join(parts)
    parsed = recipe_of(
        content,
        Recipe(len(content), (Term(xet_hash, 0, 40, len(content)),), {xet_hash: record}),
    )
    got = b"".join(
        read_file(parsed, ChunkIndexes(parsed, bucket.load), bucket.read, 205_000, 215_000)
    )
    assert got == content[205_000:215_000]
    assert bucket.reads == [(record.blake3, entries[20].start, entries[21].end)]


def test_recipe_chunk_that_was_tampered_with_is_refused() -> None:
    bucket = Bucket()
    content, recipe = stored_file(random.Random(11), bucket)
    parsed = recipe_of(content, recipe)
    first = recipe.xorbs[recipe.terms[0].xorb]
    chunk = first.chunks[recipe.terms[0].start]
    stored = bytearray(bucket.blobs[first.blake3])
    stored[chunk.end - 1] ^= 0x01  # the last payload byte of the first chunk read
    bucket.blobs[first.blake3] = bytes(stored)
    with pytest.raises((DigestMismatchError, XetInvalidError)):
        b"".join(read_file(parsed, ChunkIndexes(parsed, bucket.load), bucket.read))


def test_recipe_short_read_of_a_xorb_is_refused() -> None:
    bucket = Bucket()
    content, recipe = stored_file(random.Random(12), bucket)
    parsed = recipe_of(content, recipe)

    def short(blob: Digest, start: int, end: int) -> bytes:
        return bucket.read(blob, start, end)[:-1]

    with pytest.raises(DigestMismatchError):
        b"".join(read_file(parsed, ChunkIndexes(parsed, bucket.load), short))


def test_recipe_document_of_another_file_or_size_is_refused() -> None:
    bucket = Bucket()
    content, recipe = stored_file(random.Random(5), bucket)
    b3 = blake3.blake3(content).hexdigest()
    document = file_document(b3, SHA, recipe)
    with pytest.raises(XetInvalidError, match="another file"):
        parse_file_document(document, "cd" * 32, len(content))
    with pytest.raises(XetInvalidError, match="another size"):
        parse_file_document(document, b3, len(content) + 1)
    for field, value in [
        ("format", "modelyard.xet-file/9"),
        ("terms", [{"xorb": "00" * 32, "start": 0, "end": 1, "length": len(content)}]),
        ("terms", []),
        ("xorbs", [{"hash": "00" * 32, "blake3": "../x", "size": 10}]),
        ("sha256", "nope"),
    ]:
        bad = copy.deepcopy(document)
        bad[field] = value
        with pytest.raises(XetInvalidError):
            parse_file_document(bad, b3, len(content))
    with pytest.raises(XetInvalidError):
        parse_file_document([document], b3, len(content))


def test_recipe_chunk_index_that_does_not_fit_its_xorb_is_refused() -> None:
    bucket = Bucket()
    _, xet_hash, entries = serialize_xorb([b"a" * 100, b"b" * 200, b"c" * 300])
    data = serialize_xorb([b"a" * 100, b"b" * 200, b"c" * 300])[0]
    record = XorbRecord(xet_hash, bucket.add(data), len(data), tuple(entries))
    ref = XorbRef(record.hash, record.blake3, record.size)
    good = xorb_document(record)
    assert parse_xorb_document(good, ref) == tuple(entries)
    other = XetHash(chunk_hash(b"other").raw)
    rows = good["chunks"]
    assert isinstance(rows, list)
    cases: list[tuple[str, object]] = [
        ("hash", other.hex),
        ("size", record.size + 1),
        ("chunks", rows[:2]),  # does not fill the xorb
        ("chunks", [rows[0], rows[2], rows[1]]),  # not contiguous
        ("chunks", [[other.hex, *row[1:]] if i == 1 else row for i, row in enumerate(rows)]),
        ("chunks", [[*rows[0][:3], True], *rows[1:]]),
        ("chunks", []),
    ]
    for field, value in cases:
        bad = dict(good, **{field: value})
        with pytest.raises(XetInvalidError):
            parse_xorb_document(bad, ref)
