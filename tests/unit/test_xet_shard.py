"""Shard bytes (xet-protocol.md §3.6-3.8): round trips, a real upload shard of the stock
client with its sha256 in hash byte order, hostile shards, and the global-dedup answer."""

from __future__ import annotations

import hashlib
import random
import struct
import time
import tracemalloc
from typing import Any

import pytest

from registry.domain.errors import TooLargeError, XetInvalidError
from registry.domain.xet.hashes import chunk_hash, file_hash, hmac_hash, verification_hash
from registry.domain.xet.shard import (
    FOOTER_BYTES,
    MAX_SHARD_BYTES,
    SHARD_TAG,
    ShardFile,
    ShardXorb,
    UploadShard,
    build_shard,
    dedup_shard,
    is_dedup_eligible,
    parse_shard,
)
from registry.domain.xet.types import Term, XetHash
from registry.domain.xet.xorb import parse_xorb
from tests.unit.test_xet_xorb import FIXTURES, fixture_manifest, fixture_xorb

RECORD = 48
BOOKEND = b"\xff" * 32 + bytes(16)
FOOTER = struct.Struct("<9Q32s2Q48x4Q")


def some_hash(seed: object) -> XetHash:
    return XetHash(hashlib.sha256(repr(seed).encode()).digest())


def sample_files() -> list[ShardFile]:
    xorb = some_hash("xorb")
    terms = (Term(xorb, 0, 3, 300), Term(some_hash("other"), 5, 6, 7))
    return [
        ShardFile(
            some_hash("f1"),
            terms,
            (some_hash("v1"), some_hash("v2")),
            hashlib.sha256(b"content").hexdigest(),
        ),
        ShardFile(some_hash("f2"), terms[:1], None, None),
        ShardFile(some_hash("f3"), terms[1:], (some_hash("v3"),), None),
        ShardFile(some_hash("f4"), terms[:1], None, hashlib.sha256(b"").hexdigest()),
    ]


def sample_xorbs() -> list[ShardXorb]:
    chunks = tuple((some_hash(i), 100 * i, 100, 0) for i in range(3))
    return [
        ShardXorb(some_hash("xorb"), chunks),
        ShardXorb(some_hash("x2"), ((some_hash("c"), 0, 7, 1 << 31),)),
    ]


def one_file_shard() -> bytes:
    """Header, one file of one term with verification and sha256, bookend, one xorb of one
    chunk, bookend: records 0, 1..4, 5, 6..7, 8."""
    file = ShardFile(
        some_hash("f"), (Term(some_hash("x"), 0, 1, 10),), (some_hash("v"),), "ab" * 32
    )
    xorb = ShardXorb(some_hash("x"), ((some_hash("c"), 0, 10, 0),))
    return build_shard([file], [xorb])


def invalid(data: bytes) -> XetInvalidError:
    with pytest.raises(XetInvalidError) as caught:
        parse_shard(data)
    return caught.value


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


# --- round trips ---------------------------------------------------------------------------


def test_shard_round_trip() -> None:
    files, xorbs = sample_files(), sample_xorbs()
    data = build_shard(files, xorbs)
    assert parse_shard(data) == UploadShard(tuple(files), tuple(xorbs))
    assert parse_shard(memoryview(data)) == UploadShard(tuple(files), tuple(xorbs))


def test_shard_of_nothing_is_header_and_two_bookends() -> None:
    data = build_shard([], [])
    assert data == struct.pack("<32sQQ", SHARD_TAG, 2, 0) + BOOKEND * 2
    assert parse_shard(data) == UploadShard((), ())


def test_build_shard_sets_flags_and_sizes() -> None:
    data = one_file_shard()
    assert len(data) == 9 * RECORD
    flags, count = struct.unpack_from("<II", data, RECORD + 32)
    assert (flags, count) == (0xC0000000, 1)
    xorb_flags, chunks, unpacked, on_disk = struct.unpack_from("<IIII", data, 6 * RECORD + 32)
    assert (xorb_flags, chunks, unpacked, on_disk) == (0, 1, 10, 0)


def test_build_shard_refuses_verifications_not_one_per_term() -> None:
    file = ShardFile(some_hash("f"), (Term(some_hash("x"), 0, 1, 1),), (), None)
    with pytest.raises(ValueError):
        build_shard([file], [])


def test_shard_sha256_is_stored_in_hash_byte_order() -> None:
    digest = hashlib.sha256(b"content").digest()
    file = ShardFile(some_hash("f"), (), None, digest.hex())
    data = build_shard([file], [])
    field = data[2 * RECORD : 2 * RECORD + 32]
    words = struct.unpack("<4Q", field)
    assert struct.pack(">4Q", *words) == digest
    assert field != digest
    assert parse_shard(data).files[0].sha256 == digest.hex()


# --- a real upload of hf_xet 1.8.0 (tests/fixtures/xet) --------------------------------------


def test_parse_shard_reads_the_stock_client_upload() -> None:
    manifest = fixture_manifest()
    body, xorb = fixture_xorb()
    entries = parse_xorb(body, xorb)
    shard = parse_shard((FIXTURES / "upload.shard").read_bytes())
    (file,) = shard.files
    (listed,) = shard.xorbs
    # The sha256 extension, converted from hash byte order, is the commit's LFS oid.
    assert file.sha256 == manifest["sha256"] == manifest["commit_lfs_oid"]
    assert str(file.file_hash) == manifest["xet_hash"]
    assert file.file_hash == file_hash([(e.hash, e.length) for e in entries])
    assert file.terms == (Term(xorb, 0, len(entries), manifest["size"]),)
    assert file.verifications == (verification_hash([e.hash for e in entries]),)
    assert listed.xorb == xorb
    starts = [sum(e.length for e in entries[:i]) for i in range(len(entries))]
    assert listed.chunks == tuple(
        (e.hash, start, e.length, 0) for e, start in zip(entries, starts, strict=True)
    )


def test_stock_client_shard_sha256_field_is_not_plain_hex() -> None:
    data = (FIXTURES / "upload.shard").read_bytes()
    field = data[4 * RECORD : 4 * RECORD + 32]  # header, file header, term, verification
    assert field.hex() != fixture_manifest()["sha256"]
    assert XetHash(field).hex == fixture_manifest()["sha256"]


def test_build_shard_reproduces_the_stock_client_upload() -> None:
    data = (FIXTURES / "upload.shard").read_bytes()
    shard = parse_shard(data)
    assert build_shard(shard.files, shard.xorbs) == data


# --- hostile shards ------------------------------------------------------------------------


def test_parse_shard_refuses_huge_term_count_quickly() -> None:
    data = patched(one_file_shard()[: 2 * RECORD], RECORD + 36, struct.pack("<I", 2**32 - 1))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = invalid(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 0.1
    assert peak < 100_000
    assert error.detail["offset"] == 2 * RECORD


def test_parse_shard_refuses_huge_term_count_with_records_following() -> None:
    data = patched(one_file_shard(), RECORD + 36, struct.pack("<I", 2**32 - 1))
    invalid(data)


def test_parse_shard_refuses_huge_chunk_count() -> None:
    data = one_file_shard()
    invalid(patched(data, 6 * RECORD + 36, struct.pack("<I", 2**32 - 1)))


def test_parse_shard_refuses_bad_tag() -> None:
    data = one_file_shard()
    assert "tag" in invalid(patched(data, 0, b"HFRepoMetaDatb")).message


@pytest.mark.parametrize("version", [0, 1, 3, 2**64 - 1])
def test_parse_shard_refuses_other_versions(version: int) -> None:
    error = invalid(patched(one_file_shard(), 32, struct.pack("<Q", version)))
    assert error.detail["version"] == version


def test_parse_shard_refuses_every_truncation() -> None:
    data = one_file_shard()
    for size in range(len(data)):
        with pytest.raises(XetInvalidError):
            parse_shard(data[:size])


def test_parse_shard_refuses_missing_file_bookend() -> None:
    data = one_file_shard()
    without = data[: 5 * RECORD] + data[6 * RECORD :]
    invalid(without)


def test_parse_shard_refuses_missing_xorb_bookend() -> None:
    error = invalid(one_file_shard()[:-RECORD])
    assert "xorb section" in error.message


def test_parse_shard_refuses_trailing_bytes_without_footer() -> None:
    invalid(one_file_shard() + b"\x00")


def test_parse_shard_ignores_the_tail_when_a_footer_is_declared() -> None:
    data = one_file_shard()
    with_footer = patched(data, 40, struct.pack("<Q", FOOTER_BYTES)) + b"\x01" * FOOTER_BYTES
    assert parse_shard(with_footer) == parse_shard(data)


def test_parse_shard_refuses_body_over_64_mib() -> None:
    with pytest.raises(TooLargeError):
        parse_shard(bytes(MAX_SHARD_BYTES + 1))


# --- global dedup --------------------------------------------------------------------------


def test_is_dedup_eligible_reads_the_last_word() -> None:
    head = bytes(range(24))
    assert is_dedup_eligible(XetHash(head + (1024 * 7).to_bytes(8, "little")))
    assert is_dedup_eligible(XetHash(head + bytes(8)))
    assert not is_dedup_eligible(XetHash(head + (1024 * 7 + 1).to_bytes(8, "little")))
    assert not is_dedup_eligible(XetHash(head + (512).to_bytes(8, "little")))


def dedup_sample() -> list[tuple[XetHash, list[tuple[XetHash, int]]]]:
    rng = random.Random(4)
    return [
        (some_hash(f"xorb{x}"), [(chunk_hash(rng.randbytes(8)), 1000 + c) for c in range(n)])
        for x, n in enumerate([3, 1, 5])
    ]


def read_footer(data: bytes) -> tuple[Any, ...]:
    return FOOTER.unpack(data[-FOOTER_BYTES:])


@pytest.mark.parametrize("key", [None, bytes(range(1, 33))])
def test_dedup_shard_lists_every_chunk(key: bytes | None) -> None:
    xorbs = dedup_sample()
    data = dedup_shard(xorbs, key, 1_700_000_000, 1_700_604_800)
    assert struct.unpack_from("<32sQQ", data) == (SHARD_TAG, 2, FOOTER_BYTES)
    shard = parse_shard(data)
    assert shard.files == ()
    for (xorb, chunks), block in zip(xorbs, shard.xorbs, strict=True):
        assert block.xorb == xorb
        starts = [sum(n for _, n in chunks[:i]) for i in range(len(chunks))]
        shown = [hmac_hash(key, h) if key else h for h, _ in chunks]
        assert block.chunks == tuple(
            (h, start, n, 0) for h, start, (_, n) in zip(shown, starts, chunks, strict=True)
        )


def test_dedup_shard_footer() -> None:
    xorbs = dedup_sample()
    key = bytes(range(1, 33))
    data = dedup_shard(xorbs, key, 1_700_000_000, 1_700_604_800)
    records = sum(1 + len(c) for _, c in xorbs) + 1
    xorb_info_end = 2 * RECORD + records * RECORD
    n_chunks = sum(len(c) for _, c in xorbs)
    assert read_footer(data) == (
        1,  # version
        RECORD,  # file info: the bookend only
        2 * RECORD,  # xorb info
        xorb_info_end,  # file lookup
        0,
        xorb_info_end,  # xorb lookup
        3,
        xorb_info_end + 3 * 12,  # chunk lookup
        n_chunks,
        key,
        1_700_000_000,
        1_700_604_800,
        0,
        0,
        sum(n for _, c in xorbs for _, n in c),
        len(data) - FOOTER_BYTES,
    )
    assert data[RECORD : 2 * RECORD] == BOOKEND
    assert data[xorb_info_end - RECORD : xorb_info_end] == BOOKEND


def test_dedup_shard_without_key_has_zero_key() -> None:
    data = dedup_shard(dedup_sample(), None, 1, 2)
    assert read_footer(data)[9] == bytes(32)


@pytest.mark.parametrize("key", [None, bytes(range(1, 33))])
def test_dedup_shard_lookups_are_sorted_and_point_at_their_records(key: bytes | None) -> None:
    xorbs = dedup_sample()
    data = dedup_shard(xorbs, key, 1, 2)
    footer = read_footer(data)
    xorb_info, xorb_lookup, n_xorbs, chunk_lookup, n_chunks = (footer[i] for i in (2, 5, 6, 7, 8))
    xorb_entries = [struct.unpack_from("<QI", data, xorb_lookup + 12 * i) for i in range(n_xorbs)]
    chunk_entries = [
        struct.unpack_from("<QII", data, chunk_lookup + 16 * i) for i in range(n_chunks)
    ]
    assert xorb_entries == sorted(xorb_entries)
    assert chunk_entries == sorted(chunk_entries)
    for truncated, index in xorb_entries:
        record = data[xorb_info + RECORD * index : xorb_info + RECORD * (index + 1)]
        assert int.from_bytes(record[:8], "little") == truncated
    for truncated, index, position in chunk_entries:
        at = xorb_info + RECORD * (index + 1 + position)
        assert int.from_bytes(data[at : at + 8], "little") == truncated
        (count,) = struct.unpack_from("<I", data, xorb_info + RECORD * index + 36)
        assert position < count
    assert len(chunk_entries) == sum(len(c) for _, c in xorbs)


@pytest.mark.parametrize("key", [bytes(32), bytes(31), bytes(range(33))])
def test_dedup_shard_refuses_bad_key(key: bytes) -> None:
    with pytest.raises(ValueError):
        dedup_shard(dedup_sample(), key, 1, 2)
