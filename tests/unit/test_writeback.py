"""registry.storage.writeback: the write-behind follower and the disk probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry.storage import writeback
from registry.storage.writeback import WriteBehind, direct_is_faster


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


def test_the_disk_probe_is_cached_per_device_and_leaves_nothing(tmp_path: Path) -> None:
    writeback._probed.pop(os.stat(tmp_path).st_dev, None)
    first = direct_is_faster(tmp_path)
    assert isinstance(first, bool)
    assert os.stat(tmp_path).st_dev in writeback._probed
    assert direct_is_faster(tmp_path) is first
    assert list(tmp_path.iterdir()) == []


def test_a_disk_without_o_direct_is_written_buffered() -> None:
    shm = Path("/dev/shm")  # tmpfs refuses O_DIRECT
    writeback._probed.pop(os.stat(shm).st_dev, None)
    assert direct_is_faster(shm) is False
    assert not list(shm.glob(".write-probe-*"))
