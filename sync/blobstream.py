"""An eager blob fetch at the wire's speed, and what it keeps when it stops part-way.

Ranges are read by http.client straight into page-aligned slots (registry.client.streaming)
and each slot goes, in order, to the blob store's writer, which hashes it (BLAKE3, SHA-256)
and stores it while it is in the CPU's cache. httpx delivers a large body at ~0.6 GB/s here;
this path keeps up with one plain download. Blobs from PARALLEL_MIN take a second range
(and more) only while that raises the rate.

A fetch that stops part-way keeps its writer (the bytes received in order and the hashes'
state) in `Partials`, so the next attempt, from any source, resumes with a Range there. The
blob is visible only once the writer's commit verified the whole. A restart loses what was
kept (the local store clears its upload files as it starts) and begins again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from registry.client.client import TransientError
from registry.client.rangeget import get_range_into
from registry.client.streaming import PIECE, RangeSink, stream_into
from registry.storage import BlobWriter

PARALLEL_MIN = 2 * PIECE  # smaller blobs come in one range
SPAN_TRIES = 3  # a range's reads resumed at its next byte before the fetch stops
SPAN_WAIT = 0.25  # seconds before the first of those, doubling


def ranges_per_blob() -> int:
    """At most this many ranges of one blob at once: more than the cores only queue up."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Partial:
    writer: BlobWriter
    received: int  # bytes from the blob's start the writer holds


class WriteFailedError(Exception):
    """The blob store refused the bytes (its writer aborted itself): nothing to keep."""


class Partials:
    """Writers of fetches that stopped part-way, by digest. At most `limit` are kept (each
    holds a file or an S3 multipart upload open); the oldest is aborted for a newer one."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: OrderedDict[str, Partial] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, digest: str) -> Partial | None:
        with self._lock:
            return self._kept.pop(digest, None)

    def keep(self, digest: str, partial: Partial) -> None:
        with self._lock:
            self._kept[digest] = partial
            dropped = []
            while len(self._kept) > self._limit:
                dropped.append(self._kept.popitem(last=False)[1])
        for old in dropped:
            old.writer.abort()

    def clear(self) -> None:
        with self._lock:
            kept, self._kept = list(self._kept.values()), OrderedDict()
        for partial in kept:
            partial.writer.abort()


def receive(
    url: str,
    headers: Mapping[str, str],
    guard: Callable[[str, str], None],
    partial: Partial,
    size: int,
    landed: Callable[[int], None],
) -> None:
    """Fetch the blob at `url` from `partial.received` to `size` into `partial.writer`.

    Raises:
        StreamFailedError: a range failed after SPAN_TRIES reads (prefix: bytes the writer
            holds), or the writer did (its cause is a WriteFailedError).
    """

    def fetch(span: tuple[int, int], sink: RangeSink) -> None:
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(SPAN_TRIES),
            wait=wait_exponential(multiplier=SPAN_WAIT),
            reraise=True,
        ):
            with attempt:  # a retry resumes after the bytes already received
                get_range_into(url, headers, sink.position, span[1], sink, guard=guard)

    def take(view: memoryview, _offset: int) -> None:
        try:
            partial.writer.write(view)
        except Exception as exc:
            raise WriteFailedError(str(exc)) from exc
        landed(len(view))

    parallel = ranges_per_blob() if size - partial.received >= PARALLEL_MIN else 1
    stream_into(partial.received, size, fetch, parallel, take)
