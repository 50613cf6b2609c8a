"""The catch-up progress book, the fair queue of background blob fetches, and their stepping
aside for live news."""

from __future__ import annotations

import functools
import threading
import time

from registry.service.catchup import CatchUpBook
from sync.fairqueue import PAUSE, FairQueue, LiveFirst


def test_progress_counts_a_catch_up_once_and_starts_afresh_after_it() -> None:
    book = CatchUpBook()
    book.want("p", "a", 100)
    book.want("p", "b", 50)
    book.want("p", "a", 100)  # queued again (a backfill): counted once
    book.landed("p", 60)
    view = book.view("p", cursor=5, head=10)
    assert (view.blobs_wanted, view.bytes_wanted, view.bytes_fetched) == (2, 150, 60)
    book.done("p", "a", stored=False)  # failed: wanted again later, still counted once
    book.want("p", "a", 100)
    book.landed("p", 90)
    book.done("p", "a", stored=True)
    book.done("p", "b", stored=True)
    view = book.view("p", cursor=10, head=10)
    assert (view.blobs_fetched, view.blobs_wanted) == (2, 2)
    assert view.bytes_fetched == view.bytes_wanted == 150
    assert view.bytes_eta_seconds == 0 and view.entries_eta_seconds == 0
    book.want("p", "c", 7)  # the next catch-up
    view = book.view("p", cursor=10, head=12)
    assert (view.blobs_wanted, view.bytes_wanted, view.bytes_fetched) == (1, 7, 0)
    assert view.bytes_eta_seconds is None  # nothing moving yet


def test_fair_queue_takes_peers_in_turn_and_caps_each() -> None:
    queue = FairQueue(workers=2, per_key=1)
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def task(name: str) -> bool:
        with lock:
            started.append(name)
        return release.wait(10)

    futures = [queue.submit("a", functools.partial(task, f"a{i}")) for i in range(3)]
    futures.append(queue.submit("b", functools.partial(task, "b0")))
    deadline = time.monotonic() + 10
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # a third start now would break the cap
    # One running fetch per peer: b's blob did not wait behind a's queue.
    assert sorted(started) == ["a0", "b0"]
    release.set()
    assert all(f.result(timeout=10) for f in futures)
    assert started[2:] == ["a1", "a2"]
    queue.stop()


def test_background_fetches_wait_while_news_applies_and_never_longer_than_the_pause() -> None:
    live = LiveFirst()
    began = time.monotonic()
    live.wait()  # nothing applying: no wait
    assert time.monotonic() - began < PAUSE / 2
    waiting = threading.Event()
    done = threading.Event()

    def fetch_slot() -> None:
        waiting.set()
        live.wait()
        done.set()

    with live.applying(), live.applying():  # two pullers: the fetch waits for both
        fetch = threading.Thread(target=fetch_slot)
        fetch.start()
        assert waiting.wait(10)
        time.sleep(PAUSE / 4)
        assert not done.is_set()  # held back while news applies
    assert done.wait(PAUSE)  # ... and let go when the last apply ends
    fetch.join(10)
    with live.applying():  # a long apply holds a fetch back PAUSE at most
        began = time.monotonic()
        live.wait()
        assert PAUSE <= time.monotonic() - began < 10 * PAUSE
