"""Content digests and the one-pass hasher that computes every hash a blob needs."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from registry.domain.errors import InvalidError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Files up to this size may be regular git files; their git blob sha1 is the Hub ETag.
REGULAR_FILE_MAX = 10 * 1024 * 1024
# Pieces this large are hashed by BLAKE3 and SHA-256 on two threads at once (both release the
# GIL); smaller ones are not worth the hand-over.
PARALLEL_MIN = 256 * 1024
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True, order=True)
class Digest:
    """A BLAKE3 digest; text form `blake3:<64 hex>`."""

    hex: str

    def __post_init__(self) -> None:
        if not _HEX64.match(self.hex):
            raise InvalidError(f"Not a BLAKE3 digest: {self.hex!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        return cls(text.removeprefix("blake3:").lower())

    def __str__(self) -> str:
        return f"blake3:{self.hex}"


def is_sha256(text: str) -> bool:
    return _HEX64.match(text) is not None


@dataclass(frozen=True)
class Hashes:
    blake3: Digest
    sha256: str
    size: int
    git_sha1: str | None


class Hasher:
    """Feeds BLAKE3, SHA-256 and (for small files of known size) git SHA-1 in one pass; with
    `sha256=False` BLAKE3 alone (bytes no one will look up by SHA-256: Xet xorbs), and the
    result's `sha256` is empty."""

    def __init__(self, size_hint: int | None = None, *, sha256: bool = True) -> None:
        self._blake3 = blake3.blake3()
        self._sha256 = hashlib.sha256() if sha256 else None
        self._sha1 = None
        if sha256 and size_hint is not None and size_hint <= REGULAR_FILE_MAX:
            self._sha1 = hashlib.sha1(b"blob %d\x00" % size_hint)
        self.size_hint = size_hint
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash the next bytes; a large piece on a machine with more than one core has
        SHA-256 (and git SHA-1) computed on a helper thread while this one runs BLAKE3."""
        if self._sha256 is not None and len(data) >= PARALLEL_MIN and (os.cpu_count() or 1) > 1:
            others = _helpers().submit(self._update_others, data)
            try:
                self._blake3.update(data)
            finally:
                others.result()
        else:
            self._blake3.update(data)
            self._update_others(data)
        self.size += len(data)

    def _update_others(self, data: bytes | bytearray | memoryview) -> None:
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)

    def result(self) -> Hashes:
        git_sha1 = None
        if self._sha1 is not None and self.size == self.size_hint:
            git_sha1 = self._sha1.hexdigest()
        sha256 = "" if self._sha256 is None else self._sha256.hexdigest()
        return Hashes(Digest(self._blake3.hexdigest()), sha256, self.size, git_sha1)


def _helpers() -> ThreadPoolExecutor:
    """The threads that run SHA-256 beside BLAKE3, shared by every Hasher (one per core)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="sha256")
        return _pool


def start_helpers() -> None:
    """Start every helper thread now, from the calling thread: a thread inherits the CPU
    priority of the one that starts it (Linux), and background blob fetches, which may be
    the first to hash, run at a lower one."""
    workers = os.cpu_count() or 2
    barrier = threading.Barrier(workers, timeout=5)  # each task holds a thread: all start
    for waiting in [_helpers().submit(barrier.wait) for _ in range(workers)]:
        try:
            waiting.result()
        except threading.BrokenBarrierError:  # the pool was busy hashing: started anyway
            pass


def hash_bytes(data: bytes) -> Hashes:
    hasher = Hasher(len(data))
    hasher.update(data)
    return hasher.result()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
