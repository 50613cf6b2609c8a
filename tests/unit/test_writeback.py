"""registry.storage.writeback: the write-behind follower."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry.storage import writeback
from registry.storage.writeback import WriteBehind


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 65536 + 17])
def test_write_behind_leaves_the_file_exactly_as_written(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        behind = WriteBehind(fd, window=65536)
        written = 0
        for start in range(0, size, 10_000):
            written += os.write(fd, data[start : start + 10_000])
            behind.advance(written)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_sync_file_range_answers_on_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    fd = os.open(path, os.O_RDWR)
    try:  # Linux has it; elsewhere it reports it has none
        assert writeback.sync_file_range(fd, 0, 8192, 2) is (writeback._sync_file_range is not None)
    finally:
        os.close(fd)
