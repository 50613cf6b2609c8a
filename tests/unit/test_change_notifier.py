"""ChangeNotifier: a stop wakes every long-poll at once, and none waits after it."""

from __future__ import annotations

import asyncio
import threading
import time

from registry.service.feed import ChangeNotifier


def test_change_notifier_close_wakes_waiters_from_another_thread() -> None:
    async def scenario() -> float:
        notifier = ChangeNotifier()
        notifier.bind(asyncio.get_running_loop())
        started = time.monotonic()
        closer = threading.Timer(0.05, notifier.close)  # as the server's stop would, late
        closer.start()
        await notifier.wait(notifier.current(), 30)
        closer.join()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5


def test_change_notifier_does_not_wait_once_closed() -> None:
    async def scenario() -> float:
        notifier = ChangeNotifier()
        notifier.bind(asyncio.get_running_loop())
        event = notifier.current()
        notifier.close()
        started = time.monotonic()
        await notifier.wait(event, 30)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5
