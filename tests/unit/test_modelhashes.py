"""AutoV3, AutoV1 and kohya's claims of safetensors files, hashed as a stream in one pass."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from registry.domain.errors import SafetensorsError
from registry.domain.modelhashes import SafetensorsHasher, SafetensorsHashes
from tests.safetensors_files import addnet_hash, legacy_hash, safetensors_file


def hash_in_chunks(data: bytes, size: int) -> SafetensorsHashes:
    hasher = SafetensorsHasher(len(data))
    for start in range(0, len(data), size):
        hasher.update(data[start : start + size])
    assert hasher.received == len(data)
    return hasher.result()


@pytest.mark.parametrize(
    ("tensor_bytes", "chunk"),
    [(1000, 1), (1000, 7), (1000, 4096)]
    + [
        (size, chunk)
        for size in (0x100000 + 100, 0x180000)
        for chunk in (7, 4096, 1 << 20, 1 << 30)
    ],
)
def test_hashes_match_what_a1111_and_kohya_compute(tensor_bytes: int, chunk: int) -> None:
    data = safetensors_file({"a": tensor_bytes // 2, "b": tensor_bytes - tensor_bytes // 2})
    hashes = hash_in_chunks(data, chunk)
    assert hashes.tail_sha256 == addnet_hash(data)
    assert hashes.autov3 == addnet_hash(data)[:12]
    assert hashes.autov1 == legacy_hash(data)
    assert hashes.sshs_model_hash is None and hashes.sshs_legacy_hash is None


def test_a_file_shorter_than_the_autov1_window_hashes_what_is_there() -> None:
    small = safetensors_file({"a": 100})
    assert hash_in_chunks(small, 64).autov1 == "e3b0c442" == legacy_hash(small)  # no bytes
    partial = safetensors_file({"a": 0x100000 + 10})  # the window holds ~10 bytes
    assert hash_in_chunks(partial, 4096).autov1 == legacy_hash(partial) != "e3b0c442"


def test_a_header_past_the_autov1_offset_is_hashed_as_a1111_does() -> None:
    data = safetensors_file({"a": 5000}, {"notes": "x" * 0x110000})
    hashes = hash_in_chunks(data, 65536)
    assert hashes.autov1 == legacy_hash(data) and hashes.tail_sha256 == addnet_hash(data)


def test_kohya_claims_are_kept_as_given_and_not_checked() -> None:
    claimed = {"sshs_model_hash": "AB" * 32, "sshs_legacy_hash": "0123abcd", "ss_x": "1"}
    hashes = hash_in_chunks(safetensors_file({"a": 10}, claimed), 4096)
    assert hashes.sshs_model_hash == "ab" * 32 and hashes.sshs_legacy_hash == "0123abcd"
    odd = hash_in_chunks(safetensors_file({"a": 10}, {"sshs_model_hash": "<b>no</b>"}), 99)
    assert odd.sshs_model_hash is None


def test_the_tail_hash_is_what_kohya_writes_as_sshs_model_hash() -> None:
    """kohya hashes the file saved without its sshs keys, then saves it with them: the header
    changes, the bytes after it do not."""
    tensors: dict[str, int | bytes] = {"lora_up": random.randbytes(4096), "lora_down": b"\1" * 64}
    training = {"ss_network_dim": "8"}
    before = safetensors_file(tensors, training)
    claims = {"sshs_model_hash": addnet_hash(before), "sshs_legacy_hash": legacy_hash(before)}
    saved = safetensors_file(tensors, training | claims)
    hashes = hash_in_chunks(saved, 1000)
    assert hashes.tail_sha256 == hashes.sshs_model_hash == claims["sshs_model_hash"]


def test_a_forged_header_length_fails_at_the_first_chunk_without_allocating() -> None:
    data = struct.pack("<Q", 1 << 60) + b"{}" + b"\0" * 100
    hasher = SafetensorsHasher(len(data))
    tracemalloc.start()
    with pytest.raises(SafetensorsError, match="Header length"):
        hasher.update(data[:10])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100_000


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("<Q", 5) + b"nope!" + b"\0" * 10,  # not JSON
        struct.pack("<Q", 8) + b'{"a": 1}',  # a tensor that is not an object
        b"\x01\x02",  # shorter than the length prefix
    ],
)
def test_invalid_or_truncated_files_are_refused(data: bytes) -> None:
    hasher = SafetensorsHasher(len(data))
    with pytest.raises(SafetensorsError):
        hasher.update(data)
        hasher.result()


def test_a_file_without_tensors_has_the_hashes_of_no_bytes() -> None:
    data = struct.pack("<Q", 2) + b"{}"
    assert hash_in_chunks(data, 3).tail_sha256 == addnet_hash(data)
