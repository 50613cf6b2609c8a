"""mirror.streaming: the choice between O_DIRECT and buffered writes, and the file it writes."""

from __future__ import annotations

import mmap
import os
import random
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from mirror import streaming
from mirror.streaming import PIECE, TRIAL, TRIAL_EVERY, WriteChoice, stream_to_file

MB = 1e6


def test_write_choice_keeps_o_direct_while_it_keeps_up() -> None:
    choice = WriteChoice()
    assert choice.plan(PIECE) == [(True, PIECE)]  # nothing known yet
    choice.record(True, PIECE, PIECE / (1000 * MB))  # O_DIRECT: 1 GB/s
    plans = [choice.plan(PIECE, arriving=500 * MB) for _ in range(2 * TRIAL_EVERY)]
    assert plans == [[(True, PIECE)]] * (2 * TRIAL_EVERY)  # no buffered trials either


def test_write_choice_takes_buffered_when_o_direct_is_the_bottleneck() -> None:
    choice = WriteChoice()
    choice.record(True, PIECE, PIECE / (400 * MB))  # a slow disk: 400 MB/s O_DIRECT
    first = choice.plan(PIECE, arriving=400 * MB)
    assert first == [(False, PIECE)]  # buffered not known yet: tried
    choice.record(False, PIECE, PIECE / (2000 * MB))  # the page cache: 2 GB/s
    plans = [choice.plan(PIECE, arriving=400 * MB) for _ in range(2 * TRIAL_EVERY)]
    assert all(sum(n for _, n in plan) == PIECE for plan in plans)
    assert all(plan[-1][0] is False for plan in plans)  # the bulk goes buffered
    trials = [plan for plan in plans if len(plan) == 2]
    assert trials and all(plan[0] == (True, TRIAL) for plan in trials)  # O_DIRECT kept known
    assert len(trials) == 2  # one piece in TRIAL_EVERY
    for _ in range(4):  # buffered got slow (the VM's fresh pages): O_DIRECT again
        choice.record(False, PIECE, PIECE / (100 * MB))
    assert choice.plan(PIECE, arriving=400 * MB)[-1][0] is True
    assert choice.rates()[True] > choice.rates()[False]


def test_write_choice_never_plans_o_direct_where_it_is_refused() -> None:
    choice = WriteChoice()
    choice.no_direct()
    plans = [choice.plan(PIECE, arriving=1000 * MB) for _ in range(2 * TRIAL_EVERY)]
    assert plans == [[(False, PIECE)]] * (2 * TRIAL_EVERY)
    assert choice.plan(100) == [(False, 100)]


def serve(data: bytes) -> Callable[[tuple[int, int], Callable[[int, memoryview], None]], None]:
    def fetch(span: tuple[int, int], sink: Callable[[int, memoryview], None]) -> None:
        for start in range(span[0], span[1], 1 << 20):  # as a socket hands out bytes
            end = min(start + (1 << 20), span[1])
            sink(start, memoryview(data)[start:end])

    return fetch


@pytest.mark.parametrize("o_direct", [True, False])
def test_stream_writes_every_byte_either_way(tmp_path: Path, o_direct: bool) -> None:
    data = random.Random(7).randbytes(5 * PIECE + 4097)  # unaligned tail
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        streaming._choices.pop(os.fstat(fd).st_dev, None)
        if not o_direct:
            streaming.write_choice(fd).no_direct()
        landed: list[int] = []
        digest = stream_to_file(fd, len(data), serve(data), 1, landed.append)
    finally:
        os.close(fd)
        streaming._choices.clear()
    assert digest == blake3.blake3(data).hexdigest()
    assert sum(landed) == len(data)
    assert path.read_bytes() == data


def test_a_piece_split_between_the_two_ways_lands_whole(tmp_path: Path) -> None:
    data = random.Random(8).randbytes(PIECE)
    buffer = mmap.mmap(-1, PIECE)
    buffer[:] = data
    choice = WriteChoice()
    choice.record(True, PIECE, 1.0)  # O_DIRECT far behind the bytes arriving ...
    choice.record(False, PIECE, 0.001)  # ... and buffered far faster
    for _ in range(TRIAL_EVERY - 1):
        assert choice.plan(PIECE, arriving=1000 * MB) == [(False, PIECE)]
    slow_direct = choice.rates()[True]
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, 2 * PIECE)
        # The next piece is a trial: its first TRIAL bytes O_DIRECT, the rest buffered.
        streaming._write_piece(fd, buffer, (PIECE, 2 * PIECE), [False], choice, 1000 * MB)
    finally:
        os.close(fd)
        buffer.close()
    assert (tmp_path / "f").read_bytes()[PIECE:] == data
    assert choice.rates()[True] != slow_direct  # the trial was timed
