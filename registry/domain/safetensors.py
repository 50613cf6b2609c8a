"""Safetensors headers, read safely: bounded size, no tensor data loaded.

A file is `u64 little-endian header length` + `JSON header` + tensor bytes. The length is
checked against a cap and the file's size *before* anything is allocated, so a forged length
cannot make us allocate gigabytes. LoRA trainers (kohya) store `ss_*` keys in `__metadata__`.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.domain.errors import SafetensorsError

MAX_HEADER_BYTES = 16 * 1024 * 1024
DTYPES = {
    "BOOL",
    "U8",
    "I8",
    "F8_E4M3",
    "F8_E5M2",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "F64",
    "I64",
    "U64",
}


@dataclass(frozen=True)
class SafetensorsInfo:
    tensors: int
    parameters: dict[str, int]  # dtype -> number of values
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parameters.values())

    @property
    def suggested_tags(self) -> list[str]:
        """The most frequent training tags of a kohya LoRA (`ss_tag_frequency`)."""
        try:
            frequencies = json.loads(self.metadata.get("ss_tag_frequency", "{}"))
        except ValueError:
            return []
        counts: Counter[str] = Counter()
        for folder in frequencies.values() if isinstance(frequencies, dict) else []:
            if isinstance(folder, dict):
                counts.update(
                    {str(k).strip(): int(v) for k, v in folder.items() if isinstance(v, int)}
                )
        return [tag for tag, _ in counts.most_common(10) if tag]


def read_header(
    read: Callable[[int, int], bytes], size: int, max_header: int = MAX_HEADER_BYTES
) -> SafetensorsInfo:
    """Parse the header of a safetensors file of `size` bytes; `read(start, end)` reads bytes."""
    if size < 8:
        raise SafetensorsError("Not a safetensors file: shorter than 8 bytes")
    (length,) = struct.unpack("<Q", read(0, 8))
    if length > max_header or length > size - 8:
        raise SafetensorsError(
            f"Header length {length} exceeds the limit of {max_header} bytes or the file size"
        )
    try:
        header = json.loads(read(8, 8 + length))
    except ValueError:
        raise SafetensorsError("Header is not valid JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsError("Header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    parameters: Counter[str] = Counter()
    for name, tensor in header.items():
        dtype, shape = _tensor(name, tensor, size - 8 - length)
        parameters[dtype] += math.prod(shape)
    clean_meta = {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
    return SafetensorsInfo(len(header), dict(parameters), clean_meta)


def _tensor(name: str, tensor: object, data_size: int) -> tuple[str, list[int]]:
    if not isinstance(tensor, dict):
        raise SafetensorsError(f"Tensor {name!r} is not an object")
    dtype, shape, offsets = tensor.get("dtype"), tensor.get("shape"), tensor.get("data_offsets")
    if (
        dtype not in DTYPES
        or not isinstance(shape, list)
        or not all(isinstance(d, int) and d >= 0 for d in shape)
    ):
        raise SafetensorsError(f"Tensor {name!r} has a bad dtype or shape")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
        and 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise SafetensorsError(f"Tensor {name!r} has offsets outside the file")
    return str(dtype), shape
