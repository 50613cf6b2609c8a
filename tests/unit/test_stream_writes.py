"""mirror.streaming: the choice between O_DIRECT and buffered writes, and the file it writes."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from mirror import streaming
from mirror.streaming import PIECE, TRIAL, TRIAL_EVERY, WriteChoice, stream_to_file


def test_write_choice_tries_both_ways_then_takes_the_faster() -> None:
    choice = WriteChoice()
    first = choice.plan(PIECE)
    # Buffered on a trial's worth, O_DIRECT on the rest.
    assert first == [(False, TRIAL), (True, PIECE - TRIAL)]
    choice.record(False, TRIAL, 1.0)  # buffered: 4 MiB/s
    choice.record(True, PIECE - TRIAL, 1.0)  # O_DIRECT: 28 MiB/s
    plans = [choice.plan(PIECE) for _ in range(2 * TRIAL_EVERY)]
    assert all(sum(n for _, n in plan) == PIECE for plan in plans)
    assert all(plan[-1][0] is True for plan in plans)  # the bulk goes O_DIRECT
    trials = [plan for plan in plans if len(plan) == 2]
    assert trials and all(plan[0] == (False, TRIAL) for plan in trials)
    assert len(trials) == 2  # every TRIAL_EVERY-th piece keeps buffered's rate known
    for _ in range(4):  # the page cache got fast: buffered wins from then on
        choice.record(False, TRIAL, 0.001)
    assert choice.plan(PIECE)[-1][0] is False
    assert choice.rates()[False] > choice.rates()[True]


def test_write_choice_never_plans_o_direct_where_it_is_refused() -> None:
    choice = WriteChoice()
    choice.no_direct()
    assert [choice.plan(PIECE) for _ in range(TRIAL_EVERY * 2)] == [[(False, PIECE)]] * 8
    assert choice.plan(100) == [(False, 100)]  # a small tail is never split


def serve(data: bytes) -> Callable[[tuple[int, int], Callable[[int, memoryview], None]], None]:
    def fetch(span: tuple[int, int], sink: Callable[[int, memoryview], None]) -> None:
        for start in range(span[0], span[1], 1 << 20):  # as a socket hands out bytes
            end = min(start + (1 << 20), span[1])
            sink(start, memoryview(data)[start:end])

    return fetch


@pytest.mark.parametrize("buffered_faster", [False, True])
def test_stream_writes_every_byte_whichever_way_wins(tmp_path: Path, buffered_faster: bool) -> None:
    data = random.Random(7).randbytes(3 * PIECE + 4097)  # unaligned tail
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        streaming._choices.pop(os.fstat(fd).st_dev, None)
        choice = streaming.write_choice(fd)
        choice.record(False, 1, 1.0 if not buffered_faster else 0.001)
        choice.record(True, 1, 0.001 if not buffered_faster else 1.0)
        landed: list[int] = []
        digest = stream_to_file(fd, len(data), serve(data), 2, landed.append)
    finally:
        os.close(fd)
        streaming._choices.clear()
    assert digest == blake3.blake3(data).hexdigest()
    assert sum(landed) == len(data)
    assert path.read_bytes() == data
