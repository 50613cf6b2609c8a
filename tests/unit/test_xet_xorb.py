"""Xorb bytes (xet-protocol.md §3.5): round trips of all three schemes, a real upload of the
stock client, and every check `parse_xorb` makes on hostile bodies."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import lz4.frame  # type: ignore[import-untyped]  # lz4 ships no type stubs
import pytest

from registry.domain.errors import TooLargeError, XetInvalidError, XorbHashMismatchError
from registry.domain.xet.chunking import chunks as cut
from registry.domain.xet.hashes import chunk_hash, xorb_hash
from registry.domain.xet.types import ChunkEntry, XetHash
from registry.domain.xet.xorb import (
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_XORB_BYTES,
    XorbReader,
    decode_chunk,
    parse_xorb,
    serialize_chunk,
    serialize_xorb,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "xet"


def header(payload_length: int, length: int, scheme: int = 0, version: int = 0) -> bytes:
    """A chunk header with any field values, valid or not."""
    return struct.pack("<II", version | payload_length << 8, scheme | length << 8)


def raw_chunk(payload: bytes, length: int, scheme: int) -> bytes:
    return header(len(payload), length, scheme) + payload


def sample_chunks() -> list[bytes]:
    rng = random.Random(11)
    floats = struct.pack("<5000f", *(i * 0.25 for i in range(5000)))
    return [
        rng.randbytes(1000),
        bytes(MAX_CHUNK_BYTES),
        b"abcd" * 3000 + b"x",  # length % 4 == 1
        floats + b"yz",  # length % 4 == 2
        rng.randbytes(3),
        b"q",
    ]


def fixture_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
    return manifest


def fixture_xorb() -> tuple[bytes, XetHash]:
    name = fixture_manifest()["xorb"]
    return (FIXTURES / f"{name}.xorb").read_bytes(), XetHash.parse(name)


def invalid(data: bytes, expected: XetHash | None = None) -> XetInvalidError:
    """The error parse_xorb raises; the default hash would match a xorb of the one chunk
    `b"x"`, so the checks must fail before the hash is compared."""
    with pytest.raises(XetInvalidError) as caught:
        parse_xorb(data, expected or chunk_hash(b"x"))
    return caught.value


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_xorb_round_trip(scheme: int) -> None:
    data = sample_chunks()
    body, h, entries = serialize_xorb(data, scheme)
    assert parse_xorb(body, h) == entries
    assert parse_xorb(memoryview(body), h) == entries
    assert [decode_chunk(body[e.start : e.end]) for e in entries] == data
    assert [body[e.start + 4] for e in entries] == [scheme] * len(data)
    assert h == xorb_hash([(chunk_hash(c), len(c)) for c in data])
    assert entries[0].start == 0 and entries[-1].end == len(body)


@pytest.mark.parametrize("scheme", [1, 2])
def test_serialize_chunk_compresses(scheme: int) -> None:
    data = b"compressible " * 1000
    assert len(serialize_chunk(data, scheme)) < len(data) // 4


def test_serialize_chunk_bg4_groups_bytes_by_position() -> None:
    data = bytes([0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31])
    grouped = bytes([0x10, 0x20, 0x30, 0x11, 0x21, 0x31, 0x12, 0x22, 0x13, 0x23])
    assert lz4.frame.decompress(serialize_chunk(data, 2)[8:]) == grouped


def test_one_chunk_xorb_hash_is_the_chunk_hash() -> None:
    body, h, _ = serialize_xorb([b"single"])
    assert h == chunk_hash(b"single")
    assert parse_xorb(body, h)[0].length == 6


@pytest.mark.parametrize("bad", [b"", bytes(MAX_CHUNK_BYTES + 1)])
def test_serialize_chunk_refuses_sizes_outside_the_format(bad: bytes) -> None:
    with pytest.raises(ValueError):
        serialize_chunk(bad)


def test_serialize_chunk_refuses_unknown_scheme() -> None:
    with pytest.raises(ValueError):
        serialize_chunk(b"x", 3)


def test_serialize_xorb_refuses_no_chunks() -> None:
    with pytest.raises(ValueError):
        serialize_xorb([])


# --- a real upload of hf_xet 1.8.0 (tests/fixtures/xet) --------------------------------------


def test_parse_xorb_accepts_the_stock_client_upload() -> None:
    body, h = fixture_xorb()
    entries = parse_xorb(body, h)
    assert {body[e.start + 4] for e in entries} == {0, 1, 2}
    content = b"".join(decode_chunk(body[e.start : e.end]) for e in entries)
    manifest = fixture_manifest()
    assert len(content) == manifest["size"]
    assert hashlib.sha256(content).hexdigest() == manifest["sha256"]
    # Our chunker cuts where the client did.
    assert [len(c) for c in cut(content)] == [e.length for e in entries]
    assert [chunk_hash(c) for c in cut(content)] == [e.hash for e in entries]


def test_parse_xorb_refuses_the_stock_client_upload_under_another_hash() -> None:
    body, _ = fixture_xorb()
    with pytest.raises(XorbHashMismatchError):
        parse_xorb(body, chunk_hash(b"other"))


# --- hostile bodies ------------------------------------------------------------------------


def test_parse_xorb_refuses_wrong_hash_and_says_both() -> None:
    body, h, _ = serialize_xorb([b"a" * 100, b"b" * 100])
    wrong = chunk_hash(b"wrong")
    with pytest.raises(XorbHashMismatchError) as caught:
        parse_xorb(body, wrong)
    assert caught.value.detail == {"expected": str(wrong), "received": str(h)}


def test_parse_xorb_refuses_empty_body() -> None:
    assert "at least one chunk" in invalid(b"").message


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_parse_xorb_refuses_truncated_payload(scheme: int) -> None:
    body, h, entries = serialize_xorb(sample_chunks(), scheme)
    error = invalid(body[:-1], h)
    assert error.detail["chunk"] == len(entries) - 1
    assert error.detail["offset"] == entries[-1].start


@pytest.mark.parametrize("extra", [1, 5, 7])
def test_parse_xorb_refuses_truncated_header(extra: int) -> None:
    body, h, entries = serialize_xorb([b"abc", b"def"])
    error = invalid(body + header(3, 3)[:extra], h)
    assert error.message == "Truncated chunk header"
    assert error.detail["chunk"] == len(entries)


@pytest.mark.parametrize("scheme", [3, 99, 255])
def test_parse_xorb_refuses_unknown_scheme(scheme: int) -> None:
    error = invalid(raw_chunk(b"x", 1, scheme))
    assert error.detail["scheme"] == scheme


@pytest.mark.parametrize("version", [1, 2, 255])
def test_parse_xorb_refuses_unknown_version(version: int) -> None:
    error = invalid(header(1, 1, 0, version) + b"x")
    assert error.detail["version"] == version


def test_parse_xorb_refuses_payload_past_the_end() -> None:
    error = invalid(header(100, 100) + b"x" * 99)
    assert "past the end" in error.message


def test_parse_xorb_refuses_an_lz4_bomb_before_reading_on() -> None:
    # Each chunk is decoded as it completes: a bomb first is refused at its own chunk.
    bomb = lz4.frame.compress(bytes(10 * MAX_CHUNK_BYTES))
    error = invalid(raw_chunk(bomb, MAX_CHUNK_BYTES, 1) + header(1, 1, 7) + b"x")
    assert error.detail["chunk"] == 0


def _fed(body: bytes, cuts: list[int], expected: XetHash) -> list[ChunkEntry] | str:
    """What a XorbReader fed `body` in pieces ending at `cuts` answers: the index, or the
    error's message and detail."""
    reader = XorbReader()
    try:
        for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
            reader.feed(body[start:end])
        return reader.finish(expected)
    except XetInvalidError as exc:
        return f"{exc.message} {exc.detail}"


@pytest.mark.parametrize("seed", range(20))
def test_xorb_reader_answers_the_same_however_the_body_is_cut(seed: int) -> None:
    rng = random.Random(seed)
    body, h, entries = serialize_xorb(sample_chunks(), rng.choice([0, 1, 2]))
    hostile = [
        body,
        body[: rng.randrange(len(body))],  # ends inside a header or a payload
        body + header(3, 3, rng.choice([0, 7])),  # a cut-short or bad last chunk
    ]
    for data in hostile:
        whole = _fed(data, [], h)
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 40))))
        assert _fed(data, cuts, h) == whole
        assert _fed(data, list(range(1, len(data), 4093)), h) == whole
    assert _fed(body, [], h) == entries


@pytest.mark.parametrize("length", [0, MAX_CHUNK_BYTES + 1, (1 << 24) - 1])
def test_parse_xorb_refuses_declared_length_out_of_bounds(length: int) -> None:
    error = invalid(raw_chunk(b"x", length, 0))
    assert error.detail["length"] == length


def test_parse_xorb_refuses_lz4_bomb_quickly_without_big_allocations() -> None:
    payload = lz4.frame.compress(bytes(64 * 1024 * 1024))  # about 260 KB
    body = raw_chunk(payload, MAX_CHUNK_BYTES, 1)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = invalid(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1
    # The payload's copy and one chunk's ceiling, nowhere near the 64 MiB it would expand to.
    assert peak < 2 * 1024 * 1024
    assert error.detail["declared"] == MAX_CHUNK_BYTES


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("declared", [999, 1001])
def test_parse_xorb_refuses_declared_length_not_the_real_one(scheme: int, declared: int) -> None:
    real = serialize_chunk(random.Random(5).randbytes(1000), scheme)
    error = invalid(raw_chunk(real[8:], declared, scheme))
    assert error.detail["declared"] == declared


def test_parse_xorb_refuses_uncompressed_payload_of_another_length() -> None:
    error = invalid(raw_chunk(b"abc", 2, 0))
    assert error.detail["received"] == 3


def test_parse_xorb_refuses_garbage_lz4_payload() -> None:
    error = invalid(raw_chunk(b"not an lz4 frame at all", 10, 1))
    assert "LZ4" in error.message


def test_parse_xorb_refuses_bytes_after_the_lz4_frame() -> None:
    payload = lz4.frame.compress(b"x" * 100) + b"trailing"
    assert invalid(raw_chunk(payload, 100, 1)).detail["received"] == 100


def test_parse_xorb_refuses_two_lz4_frames_in_one_chunk() -> None:
    payload = lz4.frame.compress(b"x" * 50) * 2
    invalid(raw_chunk(payload, 100, 1))


def test_parse_xorb_refuses_more_than_8192_chunks() -> None:
    body = serialize_chunk(b"x") * (MAX_CHUNKS + 1)
    error = invalid(body)
    assert error.detail["limit"] == MAX_CHUNKS


def test_parse_xorb_accepts_8192_chunks() -> None:
    data = [i.to_bytes(2, "little") for i in range(MAX_CHUNKS)]
    body, h, entries = serialize_xorb(data)
    assert len(parse_xorb(body, h)) == len(entries) == MAX_CHUNKS


def test_parse_xorb_refuses_body_over_64_mib() -> None:
    with pytest.raises(TooLargeError) as caught:
        parse_xorb(bytes(MAX_XORB_BYTES + 1), chunk_hash(b"x"))
    assert caught.value.detail["limit"] == MAX_XORB_BYTES


# --- decode_chunk --------------------------------------------------------------------------


def test_decode_chunk_refuses_bytes_after_the_chunk() -> None:
    with pytest.raises(XetInvalidError):
        decode_chunk(serialize_chunk(b"abc") + b"x")


def test_decode_chunk_refuses_lz4_bomb() -> None:
    payload = lz4.frame.compress(bytes(16 * MAX_CHUNK_BYTES))
    with pytest.raises(XetInvalidError):
        decode_chunk(raw_chunk(payload, MAX_CHUNK_BYTES, 2))


def test_decode_chunk_refuses_truncated_chunk() -> None:
    with pytest.raises(XetInvalidError):
        decode_chunk(serialize_chunk(b"abcdef" * 100, 1)[:-2])
