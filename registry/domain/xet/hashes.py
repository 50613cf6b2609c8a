"""The keyed BLAKE3 hashes of the Xet protocol: chunk, internal node, xorb and file hashes
(the aggregation tree), term verification hashes and the dedup HMAC (xet-protocol.md §3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import blake3

from registry.domain.xet.types import ZERO, XetHash

DATA_KEY = bytes.fromhex("6697f5775b9550de3135cbaca597181c9de421109beb2b58b4d0b04b93adf229")
NODE_KEY = bytes.fromhex("017ec5c7a5472996fd946666b48a02e65ddd536f37c76dd2f86352e64a53713f")
VERIFICATION_KEY = bytes.fromhex("7f1857d6ce56ed66127ff913e7a5c3f3a4cd26d5b5db49e64124987f28fb94c3")
FILE_KEY = bytes(32)

# The aggregation tree: a group closes after an entry whose last 8 bytes, read as a
# little-endian u64, are divisible by this; groups hold at least 2 and at most 9 entries.
_BRANCHING = 4
_MAX_GROUP = 2 * _BRANCHING + 1

Leaf = tuple[XetHash, int]


def _keyed(key: bytes, data: bytes | memoryview) -> XetHash:
    return XetHash(blake3.blake3(data, key=key).digest())


def chunk_hash(data: bytes | memoryview) -> XetHash:
    """The hash of one chunk's uncompressed bytes."""
    return _keyed(DATA_KEY, data)


def node_hash(children: Sequence[Leaf]) -> XetHash:
    """The hash of an internal node of the aggregation tree: keyed BLAKE3 over one text line
    `"{hash string form} : {length}\\n"` per child."""
    text = "".join(f"{h.hex} : {length}\n" for h, length in children)
    return _keyed(NODE_KEY, text.encode("ascii"))


def _group_size(entries: Sequence[Leaf], start: int) -> int:
    """How many entries from `start` the next group takes: the next two, then one by one up
    to 9, closing right after an entry whose hash ends in a u64 divisible by 4; a tail of at
    most two entries is one group."""
    remaining = len(entries) - start
    if remaining <= 2:
        return remaining
    end = min(_MAX_GROUP, remaining)
    for i in range(2, end):
        if int.from_bytes(entries[start + i][0].raw[24:32], "little") % _BRANCHING == 0:
            return i + 1
    return end


def _merge_level(entries: Sequence[Leaf]) -> list[Leaf]:
    merged: list[Leaf] = []
    start = 0
    while start < len(entries):
        group = entries[start : start + _group_size(entries, start)]
        merged.append((node_hash(group), sum(length for _, length in group)))
        start += len(group)
    return merged


def merkle_root(leaves: Sequence[Leaf]) -> XetHash:
    """The root of the aggregation tree over (chunk hash, length) leaves. A single leaf is its
    own root; no leaves give the zero hash (the reference's convention)."""
    if not leaves:
        return ZERO
    level: Sequence[Leaf] = leaves
    while len(level) > 1:
        level = _merge_level(level)
    return level[0][0]


def xorb_hash(chunks: Sequence[Leaf]) -> XetHash:
    """The hash of a xorb: the aggregation root over its chunks' (hash, length)."""
    return merkle_root(chunks)


def file_hash(chunks: Sequence[Leaf]) -> XetHash:
    """The hash of a file from its chunks' (hash, length): the aggregation root hashed once
    more with an all-zero key. An empty file's hash is the zero hash itself, not hashed."""
    if not chunks:
        return ZERO
    return _keyed(FILE_KEY, merkle_root(chunks).raw)


def verification_hash(chunk_hashes: Sequence[XetHash]) -> XetHash:
    """A term's verification hash: keyed BLAKE3 over the raw hashes of the chunks it names,
    which proves that the uploader knows them."""
    return _keyed(VERIFICATION_KEY, b"".join(h.raw for h in chunk_hashes))


def hmac_hash(key: bytes, h: XetHash) -> XetHash:
    """A chunk hash as a global-dedup answer shows it when its footer carries `key`, so that
    the answer does not leak raw chunk hashes."""
    return _keyed(key, h.raw)
