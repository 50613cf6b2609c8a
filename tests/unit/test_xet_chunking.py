"""The gear content-defined chunker (xet-protocol.md §3.2): its table, the §3.3 chunk sizes,
its bounds, and agreement with a plain byte-by-byte transcription of the rule."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from registry.domain.xet.chunking import (
    GEAR_TABLE,
    MAX_CHUNK,
    MIN_CHUNK,
    chunk_boundaries,
    chunks,
)
from tests.unit.test_xet_hashes import counter_stream

_U64 = (1 << 64) - 1
_MASK = 0xFFFF000000000000


def plain_boundaries(data: bytes) -> list[int]:
    """The rule as §3.2 states it, one byte at a time: the hash starts at 0 in each chunk, a
    boundary falls after a byte where hash & MASK == 0 once the chunk holds MIN_CHUNK bytes,
    and at MAX_CHUNK bytes."""
    ends, start, h = [], 0, 0
    for i, byte in enumerate(data):
        h = ((h << 1) + GEAR_TABLE[byte]) & _U64
        size = i + 1 - start
        if (size >= MIN_CHUNK and not h & _MASK) or size == MAX_CHUNK:
            ends.append(i + 1)
            start, h = i + 1, 0
    if start < len(data):
        ends.append(len(data))
    return ends


def sizes(data: bytes) -> list[int]:
    return [len(c) for c in chunks(data)]


def test_gear_table_is_rust_gearhash_default_table() -> None:
    assert len(GEAR_TABLE) == 256
    assert GEAR_TABLE[0] == 0xB088D3A9E840F559
    assert GEAR_TABLE[255] == 0x63C7A906C1DD187B
    packed = struct.pack("<256Q", *GEAR_TABLE)
    expected = "e1d3936666d7ae7a977c958e9afcc75f90aaca758ce5fbe4ece61dffefe1912c"
    assert hashlib.sha256(packed).hexdigest() == expected


def test_chunks_of_empty_data_is_empty() -> None:
    assert chunk_boundaries(b"") == []
    assert chunks(b"") == []


@pytest.mark.parametrize("size", [1, 10, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1])
def test_chunks_of_small_data_is_one_chunk(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert chunks(data) == [data]


def test_chunks_of_600000_zero_bytes_are_forced_at_max() -> None:
    assert sizes(bytes(600_000)) == [MAX_CHUNK] * 4 + [75_712]


def test_chunks_of_counter_stream_1mb() -> None:
    found = sizes(counter_stream(1_000_000))
    assert len(found) == 18
    assert found[:6] == [15_495, 82_104, 50_556, 55_540, 34_273, 28_823]


def test_chunks_of_counter_stream_3mb() -> None:
    found = sizes(counter_stream(3_000_000))
    assert len(found) == 49
    assert found[:2] == [15_495, 82_104]


def test_chunks_stay_within_bounds_and_join_back() -> None:
    data = random.Random(1).randbytes(2_000_000)
    found = chunks(data)
    assert b"".join(found) == data
    assert all(MIN_CHUNK <= len(c) <= MAX_CHUNK for c in found[:-1])
    assert 0 < len(found[-1]) <= MAX_CHUNK


@pytest.mark.parametrize(
    "data",
    [
        random.Random(2).randbytes(700_000),
        bytes(300_000),
        bytes([17]) * 200_000,  # T[17] has its top 16 bits clear
        (b"\x00" * 5000 + bytes(range(256))) * 100,
        counter_stream(400_000),
    ],
    ids=["random", "zeros", "byte-17", "pattern", "counter"],
)
def test_chunk_boundaries_equal_the_plain_rule(data: bytes) -> None:
    assert chunk_boundaries(data) == plain_boundaries(data)


def test_chunks_move_only_near_an_edit() -> None:
    rng = random.Random(3)
    data = rng.randbytes(1_500_000)
    edited = data[:700_000] + b"inserted" + data[700_000:]
    before, after = chunks(data), chunks(edited)
    assert len(set(before) & set(after)) >= len(before) - 2
