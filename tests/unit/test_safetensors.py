"""Safetensors headers: parameters and LoRA metadata; forged headers refused cheaply."""

from __future__ import annotations

import json
import struct
import tracemalloc
from collections.abc import Callable

import pytest

from registry.domain.errors import SafetensorsError
from registry.domain.safetensors import read_header


def make(header: dict[str, object], data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def reader(blob: bytes) -> Callable[[int, int], bytes]:
    return lambda start, end: blob[start:end]


def test_parameters_dtypes_and_lora_metadata() -> None:
    tags = json.dumps({"10_style": {"ghibli": 40, "sky": 12}, "5_extra": {"ghibli": 2}})
    blob = make(
        {
            "a": {"dtype": "F16", "shape": [4, 8], "data_offsets": [0, 64]},
            "b": {"dtype": "F32", "shape": [3], "data_offsets": [64, 76]},
            "__metadata__": {
                "ss_network_dim": "32",
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_tag_frequency": tags,
            },
        },
        b"\0" * 76,
    )
    info = read_header(reader(blob), len(blob))
    assert (info.tensors, info.parameters, info.total) == (2, {"F16": 32, "F32": 3}, 35)
    assert info.metadata["ss_network_dim"] == "32"
    assert info.suggested_tags == ["ghibli", "sky"]


def test_forged_huge_header_length_is_refused_without_allocating() -> None:
    forged = struct.pack("<Q", 2**62) + b"{}"
    tracemalloc.start()
    with pytest.raises(SafetensorsError, match="exceeds"):
        read_header(reader(forged), 10 * 2**40)  # even if the "file" claims 10 TiB
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024 * 1024


@pytest.mark.parametrize(
    "blob",
    [
        b"short",
        struct.pack("<Q", 5) + b"nojsn",
        make({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 999]}}),
        make({"a": {"dtype": "NOPE", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
        make({"a": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
    ],
)
def test_malformed_headers_are_refused(blob: bytes) -> None:
    with pytest.raises(SafetensorsError):
        read_header(reader(blob), len(blob))
