"""registry.client.diskwrites and registry.client.streaming: the choice between O_DIRECT and
buffered writes, the number of streams, and the file written from ranges that arrive in
pieces, fail, resume."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path

import blake3
import pytest

from registry.client import diskwrites, streaming
from registry.client.diskwrites import TRIAL_EVERY, WriteChoice
from registry.client.streaming import (
    MEASURED,
    PIECE,
    SLOT,
    RangeSink,
    StreamFailedError,
    stream_to_file,
)

MB = 1e6


def plans(choice: WriteChoice, files: int) -> list[tuple[bool, bool]]:
    return [choice.plan() for _ in range(files)]


def test_write_choice_writes_like_curl_and_times_o_direct_on_a_first_slot() -> None:
    choice = WriteChoice()
    assert choice.plan() == (True, False)  # nothing known: buffered, one O_DIRECT slot first
    choice.record(True, SLOT, SLOT / (1000 * MB))  # O_DIRECT: 1 GB/s
    assert choice.plan() == (True, False)  # buffered not timed yet either
    choice.record(False, SLOT, SLOT / (1400 * MB))  # buffered 1.4 GB/s
    later = plans(choice, 2 * TRIAL_EVERY)
    assert later.count((False, False)) == 2 * TRIAL_EVERY - 2  # each file written one way
    assert later.count((True, False)) == 2  # one file in TRIAL_EVERY: a first-slot trial


def test_write_choice_takes_o_direct_when_clearly_faster_and_comes_back() -> None:
    choice = WriteChoice()
    choice.record(True, SLOT, SLOT / (1300 * MB))  # O_DIRECT 1.3 GB/s
    choice.record(False, SLOT, SLOT / (100 * MB))  # a VM's fresh pages: buffered 100 MB/s
    later = plans(choice, 2 * TRIAL_EVERY)
    assert later.count((True, True)) == 2 * TRIAL_EVERY - 2
    assert later.count((False, True)) == 2  # buffered's rate kept known
    for _ in range(4):  # the page cache got fast again
        choice.record(False, SLOT, SLOT / (5000 * MB))
    assert plans(choice, TRIAL_EVERY).count((False, False)) == TRIAL_EVERY - 1
    assert choice.rates()[False] > choice.rates()[True]


def test_write_choice_never_plans_o_direct_where_it_is_refused() -> None:
    choice = WriteChoice()
    choice.no_direct()
    assert plans(choice, 2 * TRIAL_EVERY) == [(False, False)] * (2 * TRIAL_EVERY)


def serve(data: bytes, *, readinto: bool, fail_at: set[int] | None = None) -> streaming.Fetch:
    """A source handing out bytes as a socket does (uneven pieces), either copied to the sink
    or read into the spot it offers; it fails once at each offset in `fail_at`, and the fetch
    resumes at `sink.position`, as the downloader's retries do."""
    failing = set(fail_at or ())

    def once(span: tuple[int, int], sink: RangeSink) -> None:
        offset = span[0]
        rng = random.Random(offset)
        while offset < span[1]:
            n = min(rng.randrange(1, 3 << 20), span[1] - offset)
            if hit := {f for f in failing if offset <= f < offset + n}:
                failing.difference_update(hit)
                raise ConnectionResetError("the source went away")
            if readinto:
                with sink.place(offset, n) as spot:
                    n = len(spot)
                    spot[:] = data[offset : offset + n]
            else:
                sink(offset, memoryview(data)[offset : offset + n])
            offset += n

    def fetch(span: tuple[int, int], sink: RangeSink) -> None:
        for _ in range(3):
            try:
                once((sink.position, span[1]), sink)
                return
            except ConnectionResetError:
                continue
        raise ConnectionResetError("gave up")

    return fetch


@pytest.mark.parametrize("o_direct", [True, False])
@pytest.mark.parametrize("readinto", [True, False])
@pytest.mark.parametrize("parallel", [1, 3])
def test_stream_writes_every_byte_in_order(
    tmp_path: Path, o_direct: bool, readinto: bool, parallel: int
) -> None:
    data = random.Random(7).randbytes(3 * PIECE + 4097)  # unaligned tail
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        diskwrites._choices.pop(os.fstat(fd).st_dev, None)
        if not o_direct:
            diskwrites.write_choice(fd).no_direct()
        landed: list[int] = []
        fetch = serve(data, readinto=readinto, fail_at={PIECE + 5, 2 * PIECE + SLOT})
        digest = stream_to_file(fd, len(data), fetch, parallel, landed.append)
    finally:
        os.close(fd)
        diskwrites._choices.clear()
    assert digest == blake3.blake3(data).hexdigest()
    assert sum(landed) == len(data)
    assert path.read_bytes() == data


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_failed_range_leaves_the_good_prefix_and_says_how_long_it_is(
    tmp_path: Path, parallel: int
) -> None:
    data = random.Random(9).randbytes(3 * PIECE)
    broken = 2 * PIECE + 3 * SLOT + 17  # fails at every try
    fetch = serve(data, readinto=True, fail_at=set())

    def failing(span: tuple[int, int], sink: RangeSink) -> None:
        if span[0] <= broken < span[1]:
            fetch((span[0], broken), sink)
            raise ConnectionResetError("the source went away for good")
        fetch(span, sink)

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(StreamFailedError) as failed:
            stream_to_file(fd, len(data), failing, parallel, lambda _: None)
    finally:
        os.close(fd)
        diskwrites._choices.clear()
    prefix = failed.value.prefix
    assert 2 * PIECE <= prefix <= broken  # the slots before the failure, in order
    assert isinstance(failed.value.cause, ConnectionResetError)
    assert path.read_bytes()[:prefix] == data[:prefix]


def test_a_sink_refuses_bytes_out_of_order(tmp_path: Path) -> None:
    data = random.Random(10).randbytes(PIECE)

    def skipping(span: tuple[int, int], sink: RangeSink) -> None:
        sink(span[0], memoryview(data)[: SLOT // 2])
        sink(span[0] + SLOT, memoryview(data)[SLOT:])  # a hole where bytes are missing

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(StreamFailedError) as failed:
            stream_to_file(fd, len(data), skipping, 1, lambda _: None)
    finally:
        os.close(fd)
        diskwrites._choices.clear()
    assert isinstance(failed.value.cause, ValueError)
    assert failed.value.prefix == 0


def paced(seconds: float, shared: threading.Lock | None, seen: dict[int, int]) -> streaming.Fetch:
    """A source that takes `seconds` per piece on each connection (`shared`: one at a time,
    a link the streams share); records which thread fetched each piece."""

    def fetch(span: tuple[int, int], sink: RangeSink) -> None:
        with shared or contextlib.nullcontext():
            time.sleep(seconds)
        seen[span[0] // PIECE] = threading.get_ident()
        for offset in range(span[0], span[1], SLOT):
            with sink.place(offset, SLOT):
                pass  # the bytes do not matter here

    return fetch


@pytest.mark.parametrize("shared", [False, True])
def test_a_further_stream_stays_only_where_it_raises_the_rate(tmp_path: Path, shared: bool) -> None:
    pieces = 1 + 4 * MEASURED  # time for streams to come, and one to go
    seen: dict[int, int] = {}
    # Slow next to hashing and writing a piece (~30-100 ms here idle, 200+ ms under CI's load
    # once), so that only the source decides whether a stream pays.
    fetch = paced(0.5, threading.Lock() if shared else None, seen)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        stream_to_file(fd, pieces * PIECE, fetch, 4, lambda _: None)
    finally:
        os.close(fd)
        diskwrites._choices.clear()
    last = {seen[i] for i in range(pieces - MEASURED, pieces)}
    if shared:  # a second stream gained nothing: retired, the last pieces came on one
        assert len(last) == 1
    else:  # each stream brings its own rate: more came, up to the limit
        assert len(last) >= 2
