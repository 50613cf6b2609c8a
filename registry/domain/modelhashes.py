"""The hashes generation tools write for a safetensors file, computed from its bytes in one pass.

- AutoV3 (kohya's "addnet" hash, what A1111 writes in `Lora hashes`): the first 12 hex of the
  SHA-256 of the bytes after the header (from 8 + header length to the end). The full SHA-256
  of that tail is kept too: kohya writes it into the header as `sshs_model_hash`.
- AutoV1 (A1111's legacy "model hash"): the first 8 hex of the SHA-256 of the 0x10000 bytes at
  offset 0x100000. A1111 seeks there and hashes what `read(0x10000)` returns, so a shorter file
  hashes what it has past 0x100000, and one of at most 0x100000 bytes hashes nothing
  (`e3b0c442`, the SHA-256 of no bytes).
- kohya's `sshs_model_hash` and `sshs_legacy_hash` from `__metadata__`, as the file claims
  them: never checked (kohya computes the legacy one on a copy without those two keys, whose
  header is shorter, so it often differs from the file's own AutoV1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from registry.domain.errors import SafetensorsError
from registry.domain.safetensors import MAX_HEADER_BYTES, read_header

AUTOV1_START = 0x100000
AUTOV1_END = AUTOV1_START + 0x10000


@dataclass(frozen=True)
class SafetensorsHashes:
    tail_sha256: str  # 64 hex: SHA-256 of the bytes after the header
    autov1: str  # 8 hex
    sshs_model_hash: str | None = None  # claimed by the header, not verified
    sshs_legacy_hash: str | None = None  # claimed by the header, not verified

    @property
    def autov3(self) -> str:
        return self.tail_sha256[:12]


class SafetensorsHasher:
    """Feed a file's bytes in order (`update`), then take `result()`. Memory stays bounded: only
    the header is kept (at most `max_header` bytes, its length checked before it is kept).

    Raises SafetensorsError (from `update` as soon as it shows, or `result`) for a file that is
    not a valid safetensors file: its hashes are then "none", never retried."""

    def __init__(self, size: int, max_header: int = MAX_HEADER_BYTES) -> None:
        self._size = size
        self._max_header = max_header
        self._head = bytearray()  # the length prefix and the header, until parsed
        self._header_end: int | None = None  # 8 + header length, once the prefix is read
        self._metadata: dict[str, str] | None = None
        self._tail = hashlib.sha256()
        self._autov1 = hashlib.sha256()
        self.received = 0

    def update(self, chunk: bytes) -> None:
        start, view = self.received, memoryview(chunk)
        self.received += len(chunk)
        if self._metadata is None:
            self._read_head(view, start)
        end = self._header_end
        if end is not None and self.received > end:
            self._tail.update(view[max(0, end - start) :])
        if start < AUTOV1_END and self.received > AUTOV1_START:
            self._autov1.update(view[max(0, AUTOV1_START - start) : AUTOV1_END - start])

    def result(self) -> SafetensorsHashes:
        if self._metadata is None:
            raise SafetensorsError("Not a safetensors file: it ends inside its header")
        return SafetensorsHashes(
            self._tail.hexdigest(),
            self._autov1.hexdigest()[:8],
            _claim(self._metadata.get("sshs_model_hash")),
            _claim(self._metadata.get("sshs_legacy_hash")),
        )

    def _read_head(self, view: memoryview, start: int) -> None:
        want = (self._header_end or 8) - start
        self._head += view[: max(0, want)]
        if self._header_end is None and len(self._head) >= 8:
            length = int.from_bytes(self._head[:8], "little")
            if length > self._max_header or length > self._size - 8:
                raise SafetensorsError(
                    f"Header length {length} exceeds the limit of {self._max_header} bytes "
                    "or the file size"
                )
            self._header_end = 8 + length
            self._head += view[want : self._header_end - start]
        if self._header_end is not None and len(self._head) >= self._header_end:
            head = bytes(self._head)
            info = read_header(lambda a, b: head[a:b], self._size, self._max_header)
            self._metadata, self._head = info.metadata, bytearray()


def _claim(value: str | None) -> str | None:
    """A claimed hash as stored: lower-case hex, or None when it is not hex at all."""
    if value is None:
        return None
    text = value.strip().lower()
    return text if text and len(text) <= 64 and all(c in "0123456789abcdef" for c in text) else None
