"""Small real safetensors files for tests (header and tensor bytes written by hand, no torch),
and the hashes generation tools compute of them, written as A1111 and kohya do (seek, read)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct


def safetensors_file(
    tensors: dict[str, int | bytes], metadata: dict[str, str] | None = None
) -> bytes:
    """A valid file of U8 tensors, each given as its bytes or its size (random bytes), with
    `__metadata__`."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    data = bytearray()
    for name, content in tensors.items():
        raw = random.randbytes(content) if isinstance(content, int) else content
        offsets = [len(data), len(data) + len(raw)]
        header[name] = {"dtype": "U8", "shape": [len(raw)], "data_offsets": offsets}
        data += raw
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def addnet_hash(data: bytes) -> str:
    """kohya's `addnet_hash_safetensors`: SHA-256 of what follows the header (AutoV3: 12 hex)."""
    file = io.BytesIO(data)
    n = int.from_bytes(file.read(8), "little")
    file.seek(n + 8)
    return hashlib.sha256(file.read()).hexdigest()


def legacy_hash(data: bytes) -> str:
    """A1111's `model_hash` (AutoV1): 8 hex of SHA-256 of read(0x10000) at 0x100000."""
    file = io.BytesIO(data)
    file.seek(0x100000)
    return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]
