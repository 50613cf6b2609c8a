"""A fresh large download: ranges fetched in parallel into small reused slots, each slot
hashed and written in file order while it is still in the CPU's cache, so the file is
verified as it lands and never read back.

The file is cut into PIECE-sized ranges; piece i goes to fetcher i % parallel, and each
fetcher fills its own few SLOT-sized page-aligned buffers with its pieces' bytes, in order.
The consumer (the calling thread) takes the pieces in file order from their fetchers, feeds
each slot to BLAKE3, writes it with O_DIRECT or buffered, whichever this disk writes faster
(`WriteChoice`), and hands the slot back. A fetcher waits only for its own slots, so no
fetcher can starve the piece the consumer needs next. Memory stays at parallel x SLOTS x
SLOT whatever the file size. A failure leaves the in-order prefix on disk and says how long
it is, so the caller can resume from there.

Measured on loopback against a node (two shared cores, 1 GiB): hashing and writing 4 MiB
slots as they arrive ran at 1.3x `curl -o`, where hashing 32 MiB pieces once whole (out of
the cache) ran at 0.7x.
"""

from __future__ import annotations

import mmap
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import blake3

from registry.client.diskwrites import Writes

PIECE = 32 * 1024 * 1024  # one range (a multiple of SLOT)
SLOT = 4 * 1024 * 1024  # one buffer (a multiple of the O_DIRECT alignment)
SLOTS = PIECE // SLOT  # per fetcher: it can fetch a whole piece ahead of the consumer
MEASURED = 4  # pieces: the rate with one more stream is measured over this many
GAIN = 1.1  # a further stream stays when it raises the rate this much


class StreamFailedError(Exception):
    """The download stopped; `prefix` bytes from the start are on disk and correct so far."""

    def __init__(self, prefix: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.prefix = prefix
        self.cause = cause


class _Stopped(Exception):
    """The consumer stopped (done or failed): a fetcher waiting for a slot gives up."""


class RangeSink:
    """Where one fetcher's range lands: its bytes fill the fetcher's slots in order, and each
    full slot (and the range's last) goes to the consumer.

    Called with bytes, it copies them in. A reader that can fill memory itself (a socket's
    `readinto`) asks `place(offset, n)` for the spot instead and saves that copy; its next
    `place` (or the end of the range) says how far the last one was filled. `position` is the
    next byte wanted: a fetch that retries resumes there.
    """

    def __init__(self, fetcher: _Fetcher, start: int) -> None:
        self._fetcher = fetcher
        self.position = start
        self._slot: mmap.mmap | None = None
        self._filled = 0
        self._placed = 0  # the size of the spot `place` handed out last

    def __call__(self, offset: int, data: memoryview) -> None:
        self._advance(offset)  # only the next byte is accepted: no spot is out
        while data:
            with self._room(len(data)) as room:
                n = len(room)
                room[:] = data[:n]
            self._filled += n
            self.position += n
            data = data[n:]

    def place(self, offset: int, size: int) -> memoryview:
        self._advance(offset)
        spot = self._room(size)
        self._placed = len(spot)
        return spot

    def finish(self, end: int) -> None:
        """The range is complete up to `end`: its last slot goes to the consumer."""
        self._advance(end)
        if self._slot is not None:
            if self._filled:
                self._fetcher.filled.put((self._slot, self._filled))
            else:
                self._fetcher.free.put(self._slot)
            self._slot = None

    def _advance(self, offset: int) -> None:
        """Count the bytes the last `place`d spot was filled with, up to `offset`."""
        if not self.position <= offset <= self.position + self._placed:
            raise ValueError(f"bytes at {offset} arrived, {self.position} was next")
        self._filled += offset - self.position
        self.position = offset
        self._placed = 0

    def _room(self, size: int) -> memoryview:
        if self._slot is not None and self._filled == SLOT:
            self._fetcher.filled.put((self._slot, SLOT))
            self._slot = None
        if self._slot is None:
            self._slot, self._filled = self._fetcher.take(), 0
        with memoryview(self._slot) as whole:
            return whole[self._filled : self._filled + min(size, SLOT - self._filled)]


class _Fetcher:
    """One fetch thread: takes pieces in turn and fills its own slots with them; the consumer
    takes `filled` slots (or the fetcher's failure) in order and hands them back `free`."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.retired = False  # takes no further piece
        self.slots = [mmap.mmap(-1, SLOT) for _ in range(SLOTS)]
        self.free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self.filled: queue.SimpleQueue[tuple[mmap.mmap, int] | BaseException] = queue.SimpleQueue()
        for slot in self.slots:
            self.free.put(slot)

    def take(self) -> mmap.mmap:
        while True:
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None

    def run(self, fetch: Fetch, pieces: _Pieces) -> None:
        try:
            while (span := pieces.take(self)) is not None:
                sink = RangeSink(self, span[0])
                fetch(span, sink)
                sink.finish(span[1])
        except _Stopped:
            pass
        except BaseException as exc:  # the consumer raises it when it reaches these bytes
            pieces.failed()
            self.filled.put(exc)

    def close(self) -> None:
        for slot in self.slots:
            try:
                slot.close()
            except BufferError:  # a view is still held (a traceback's): freed with it
                pass


class _Pieces:
    """The file's pieces, handed to fetchers in order; says which fetcher has each."""

    def __init__(self, size: int, start: int = 0) -> None:
        self.spans = [(s, min(s + PIECE, size)) for s in range(start, size, PIECE)]
        self._next = 0
        self._owners: dict[int, _Fetcher] = {}
        self._failed = False
        self._changed = threading.Condition()

    def take(self, fetcher: _Fetcher) -> tuple[int, int] | None:
        with self._changed:
            if fetcher.retired or self._failed or self._next == len(self.spans):
                return None
            self._owners[self._next] = fetcher
            self._next += 1
            self._changed.notify_all()
            return self.spans[self._next - 1]

    def failed(self) -> None:
        with self._changed:
            self._failed = True
            self._changed.notify_all()

    def owner(self, i: int) -> _Fetcher:
        """The fetcher of piece i, once one took it.

        Raises:
            _Stopped: a fetcher failed before any took it (the consumer meets that failure
                first: it was on an earlier piece).
        """
        with self._changed:
            self._changed.wait_for(lambda: i in self._owners or self._failed)
            if i not in self._owners:
                raise _Stopped
            return self._owners.pop(i)


class _Streams:
    """How many ranges are fetched at once: one, then one more while that raises the rate by
    GAIN over MEASURED pieces, up to `limit`; a stream that did not pay is retired.

    On loopback a second stream only takes CPU from hashing and writing (one stream ran at
    1.0x curl, two at 0.8x); over a network each connection's own limits make more pay."""

    def __init__(self, limit: int, start: Callable[[], _Fetcher]) -> None:
        self._limit = limit
        self._start = start
        self.fetchers = [start()]
        # When this count began: time, bytes, pieces (-1: the first piece, slow to start, is
        # not counted).
        self._since = (time.perf_counter(), 0, -1)
        self._rate: float | None = None  # bytes/s with one stream fewer
        self._settled = limit == 1

    def consumed(self, offset: int) -> None:
        """A piece was consumed, up to `offset`."""
        if self._settled:
            return
        began, at, pieces = self._since
        if pieces < 0:
            self._since = (time.perf_counter(), offset, 0)
            return
        if pieces + 1 < MEASURED:
            self._since = (began, at, pieces + 1)
            return
        now = time.perf_counter()
        rate = (offset - at) / max(now - began, 1e-9)
        if self._rate is None or rate > self._rate * GAIN:
            self._rate = rate
            if len(self.fetchers) < self._limit:
                self.fetchers.append(self._start())
            else:
                self._settled = True
        else:
            self.fetchers[-1].retired = True
            self._settled = True
        self._since = (now, offset, 0)


Fetch = Callable[[tuple[int, int], RangeSink], None]


def stream_to_file(
    fd: int, size: int, fetch: Fetch, parallel: int, landed: Callable[[int], None]
) -> str:
    """Download [0, size) through `fetch(span, sink)` into `fd`, with up to `parallel`
    ranges at once; returns the BLAKE3 hex. `fetch` may retry within a span, resuming at
    `sink.position`.

    Raises:
        StreamFailedError: a range could not be fetched (after `fetch`'s own retries).
    """
    hasher = blake3.blake3()
    writes = Writes(fd)

    def take(view: memoryview, offset: int) -> None:
        hasher.update(view)
        writes.write(view, offset)
        landed(len(view))

    try:
        stream_into(0, size, fetch, parallel, take)
    finally:
        writes.close()
    return str(hasher.hexdigest())


def stream_into(
    start: int, size: int, fetch: Fetch, parallel: int, take: Callable[[memoryview, int], None]
) -> None:
    """Fetch [start, size) through `fetch(span, sink)` with up to `parallel` ranges at once,
    handing each slot in order to `take(view, offset)` (the view is reused once it returns).

    Raises:
        StreamFailedError: a range could not be fetched, or `take` failed; `prefix` counts
            from 0, so the caller may resume there.
    """
    pieces = _Pieces(size, start)
    stop = threading.Event()
    prefix = start
    with ThreadPoolExecutor(max(1, parallel)) as pool:

        def begin() -> _Fetcher:
            fetcher = _Fetcher(stop)
            pool.submit(fetcher.run, fetch, pieces)
            return fetcher

        streams = _Streams(max(1, min(parallel, len(pieces.spans))), begin)
        try:
            for i, (_, end) in enumerate(pieces.spans):
                fetcher = pieces.owner(i)
                while prefix < end:
                    item = fetcher.filled.get()
                    if isinstance(item, BaseException):
                        raise item
                    slot, count = item
                    with memoryview(slot) as whole, whole[:count] as view:
                        take(view, prefix)
                    fetcher.free.put(slot)
                    prefix += count
                streams.consumed(prefix)
        except BaseException as exc:
            raise StreamFailedError(prefix, exc) from exc
        finally:
            stop.set()
            pool.shutdown(wait=True)
            for fetcher in streams.fetchers:
                fetcher.close()
