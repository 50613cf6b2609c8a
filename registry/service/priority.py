"""Background threads at the lowest CPU priority, and stops that wait for them to end.

A thread at NICE takes only what the node's requests leave, and the threads it starts inherit
its priority (Linux). At the process's exit, such a thread still alive gets the cores last, so
it is likely the last to leave; and the last thread frees the whole process's memory. On a
busy machine that took 1-2 s at NICE (measured: a node of ~140 MiB, two cores, four busy
processes), after a stop that had taken under 2 s. So their owners' stops wait, briefly, for
them to end (`wait_ended`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

NICE = 19  # the lowest CPU priority
_POLL = 0.01  # seconds between looks at whether a thread has left the process


def lower_priority() -> None:
    """Run this thread (and the threads it starts) at NICE; on a system that does not allow
    it, at full priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (OSError, AttributeError):  # not Linux, or not allowed
        pass


def wait_ended(threads: Sequence[threading.Thread], timeout: float) -> bool:
    """Join these threads, then wait until the operating system's threads have left the
    process too (a joined thread has a little left to do there); at most `timeout` seconds in
    all. True if they have. Call it once they have been told to stop."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread.ident is not None:  # started
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        return False
    tasks = [f"/proc/self/task/{t.native_id}" for t in threads if t.native_id is not None]
    while any(os.path.exists(task) for task in tasks):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True
