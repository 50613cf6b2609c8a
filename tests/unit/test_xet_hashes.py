"""Xet hashes (xet-protocol.md §3.1, §3.3): the string form, keyed BLAKE3 hashes, the
aggregation tree, and file hashes checked against the stock client (`hf_xet.hash_files`)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import blake3
import hf_xet  # type: ignore[import-untyped]  # hf_xet ships no type information
import pytest

from registry.domain.xet.chunking import chunks
from registry.domain.xet.hashes import (
    DATA_KEY,
    NODE_KEY,
    VERIFICATION_KEY,
    chunk_hash,
    file_hash,
    hmac_hash,
    merkle_root,
    node_hash,
    verification_hash,
    xorb_hash,
)
from registry.domain.xet.types import ZERO, XetHash


def counter_stream(size: int) -> bytes:
    """The §3.3 test stream: block i is sha256(i as 8-byte little-endian), concatenated."""
    blocks = (hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def hash_of_file(data: bytes) -> XetHash:
    return file_hash([(chunk_hash(c), len(c)) for c in chunks(data)])


def with_tail(tail: int) -> XetHash:
    """A hash whose last 8 bytes, as a little-endian u64, are `tail` (the tree's cut rule)."""
    return XetHash(bytes(random.Random(tail).randbytes(24)) + tail.to_bytes(8, "little"))


# --- string form (§3.1) ---------------------------------------------------------------------


def test_hash_string_form_reverses_each_word() -> None:
    # The doc's example drops "10" from the third word; this is the draft-denis-xet vector.
    h = XetHash(bytes(range(32)))
    text = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert str(h) == h.hex == text
    assert XetHash.parse(text) == h


# --- keyed hashes: §3.3 and the draft-denis-xet vectors -------------------------------------


def test_chunk_hash_matches_draft_vector() -> None:
    h = chunk_hash(b"Hello World!")
    assert h.raw.hex() == "a29cfb08e608d4d8726dd8659a90b9134b3240d5d8e42d5fcb28e2a6e763a3e8"
    assert str(h) == "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb"


def test_chunk_hash_is_blake3_keyed_with_data_key() -> None:
    data = b"some chunk"
    assert chunk_hash(data).raw == blake3.blake3(data, key=DATA_KEY).digest()
    assert chunk_hash(memoryview(data)) == chunk_hash(data)


def test_node_hash_matches_draft_vector() -> None:
    first = XetHash.parse("c28f58387a60d4aa200c311cda7c7f77f686614864f5869eadebf765d0a14a69")
    second = XetHash.parse("6e4e3263e073ce2c0e78cc770c361e2778db3b054b98ab65e277fc084fa70f22")
    expected = "be64c7003ccd3cf4357364750e04c9592b3c36705dee76a71590c011766b6c14"
    assert str(node_hash([(first, 100), (second, 200)])) == expected


def test_node_hash_hashes_one_text_line_per_child() -> None:
    a, b = chunk_hash(b"a"), chunk_hash(b"b")
    text = f"{a} : 1\n{b} : 22\n".encode()
    assert node_hash([(a, 1), (b, 22)]).raw == blake3.blake3(text, key=NODE_KEY).digest()


def test_verification_hash_matches_draft_vector() -> None:
    hashes = [
        XetHash(bytes.fromhex("aad4607a38588fc2777f7cda1c310c209e86f564486186f6694aa1d065f7ebad")),
        XetHash(bytes.fromhex("2cce73e063324e6e271e360c77cc780e65ab984b053bdb78220fa74f08fc77e2")),
    ]
    expected = "eb06a8ad81d588ac05d1d9a079232d9c1e7d0b07232fa58091caa7bf333a2768"
    assert str(verification_hash(hashes)) == expected
    raw = b"".join(h.raw for h in hashes)
    assert verification_hash(hashes).raw == blake3.blake3(raw, key=VERIFICATION_KEY).digest()


def test_hmac_hash_is_blake3_keyed_over_raw_hash() -> None:
    key, h = bytes(range(32)), chunk_hash(b"x")
    assert hmac_hash(key, h).raw == blake3.blake3(h.raw, key=key).digest()
    assert hmac_hash(key, h) != hmac_hash(bytes(range(1, 33)), h)


# --- the aggregation tree -------------------------------------------------------------------


def test_merkle_root_of_one_leaf_is_the_leaf() -> None:
    h = chunk_hash(b"only")
    assert merkle_root([(h, 4)]) == h
    assert xorb_hash([(h, 4)]) == h


def test_merkle_root_of_no_leaves_is_zero() -> None:
    assert merkle_root([]) == ZERO


def test_merkle_root_of_two_leaves_is_their_node() -> None:
    leaves = [(chunk_hash(b"a"), 1), (chunk_hash(b"b"), 1)]
    assert merkle_root(leaves) == node_hash(leaves)


def test_merkle_root_groups_up_to_nine_without_a_cut() -> None:
    # A lone last entry still becomes a node of its own at that level.
    leaves = [(with_tail(4 * i + 1), i + 1) for i in range(10)]
    first, second = node_hash(leaves[:9]), node_hash(leaves[9:])
    assert merkle_root(leaves) == node_hash([(first, 45), (second, 10)])


def test_merkle_root_closes_a_group_after_a_hash_divisible_by_4() -> None:
    # Entry 3 ends in a multiple of 4: the group is entries 0..3; the cut rule ignores the
    # first two entries (0 and 1 are multiples of 4 too, but a group takes two at least).
    tails = [0, 8, 1, 12, 5, 7]
    leaves = [(with_tail(t), 10) for t in tails]
    first = node_hash(leaves[:4])
    second = node_hash(leaves[4:])
    assert merkle_root(leaves) == node_hash([(first, 40), (second, 20)])


def test_merkle_root_keeps_a_tail_of_two_as_one_group() -> None:
    tails = [1, 1, 4, 1, 1]
    leaves = [(with_tail(t), 1) for t in tails]
    assert merkle_root(leaves) == node_hash(
        [(node_hash(leaves[:3]), 3), (node_hash(leaves[3:]), 2)]
    )


def test_merkle_root_cuts_each_level_again() -> None:
    leaves = [(with_tail(4 * i + 1), 1) for i in range(100)]
    level = [(node_hash(leaves[i : i + 9]), len(leaves[i : i + 9])) for i in range(0, 100, 9)]
    # 12 nodes: whether the next level cuts early depends on their hashes; build it by rule.
    assert merkle_root(leaves) == merkle_root(level)


# --- file hashes: the §3.3 vectors ------------------------------------------------------------


def test_file_hash_of_empty_file_is_zero() -> None:
    assert file_hash([]) == ZERO
    assert hash_of_file(b"") == ZERO


def test_file_hash_of_hello_xet() -> None:
    data = b"hello xet\n"
    assert (
        str(chunk_hash(data)) == "24a33e1db68b4969c9293aa5b4dfc314faeff85f23b10e77124ea59d49e7caa1"
    )
    expected = "1ba2068e20e8f365c75a17600ea73d49e617acd2222894a20db100d0032b4e22"
    assert str(hash_of_file(data)) == expected


def test_file_hash_is_the_root_keyed_with_zeros() -> None:
    leaves = [(chunk_hash(b"a"), 1), (chunk_hash(b"b"), 1)]
    root = merkle_root(leaves)
    assert file_hash(leaves).raw == blake3.blake3(root.raw, key=bytes(32)).digest()


def test_file_hash_of_600000_zero_bytes() -> None:
    expected = "1593f9bc1922b6d95bc37e483028dad212ce728be9431871fa8e2758d276ed8c"
    assert str(hash_of_file(bytes(600_000))) == expected


def test_file_hash_of_counter_stream_1mb() -> None:
    expected = "821f3082696957442edc1152ff335f9107b9195661bbd39b7805e162c1284db9"
    assert str(hash_of_file(counter_stream(1_000_000))) == expected


def test_file_hash_of_counter_stream_3mb() -> None:
    expected = "6cbfa2f18ca979ca08f98efd649f2d269fe253a7554cf32b6245f5e2d3dd03ec"
    assert str(hash_of_file(counter_stream(3_000_000))) == expected


# --- property: our file hash equals the stock client's ----------------------------------------


def _random_files() -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(400_000))
    return [
        ("empty", b""),
        ("one", b"\x00"),
        ("below-min", rng.randbytes(8191)),
        ("min", rng.randbytes(8192)),
        ("max-plus-one", rng.randbytes(131_073)),
        ("random-3mb", rng.randbytes(3_000_000)),
        ("repetitive-2mb", (rng.randbytes(1000) * 2100)[:2_000_000]),
        ("text", text.encode()),
        ("mixed", bytes(150_000) + rng.randbytes(200_000) + b"abc" * 90_000),
    ]


def test_file_hash_matches_hf_xet_on_random_files(tmp_path: Path) -> None:
    files = _random_files()
    paths = []
    for name, data in files:
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))
    expected = [info.hash for info in hf_xet.hash_files(paths)]
    assert [str(hash_of_file(data)) for _, data in files] == expected


@pytest.mark.parametrize("seed", range(3))
def test_file_hash_matches_hf_xet_on_seeded_sizes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1, 700_000))
    path = tmp_path / "data"
    path.write_bytes(data)
    (info,) = hf_xet.hash_files([str(path)])
    assert str(hash_of_file(data)) == info.hash
    assert info.file_size == len(data)
