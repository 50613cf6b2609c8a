"""Low-priority threads: lowered for real; a stop's wait sees when they have left the process."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from registry.service.priority import NICE, lower_priority, wait_ended

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="thread priorities are Linux's")


def test_a_lowered_thread_runs_at_nice_and_the_wait_ends_when_it_does() -> None:
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []
    lowered, release = threading.Event(), threading.Event()

    def body() -> None:
        lower_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        lowered.set()
        release.wait(10)

    thread = threading.Thread(target=body)
    thread.start()
    try:
        assert lowered.wait(10)
        assert seen == [NICE]
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == here  # unchanged
        assert wait_ended([thread], 0.2) is False  # still alive: the wait gives up in time
    finally:
        release.set()
    assert wait_ended([thread], 5) is True
    assert not os.path.exists(f"/proc/self/task/{thread.native_id}")
