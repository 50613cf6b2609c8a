"""SharedGeneration: cached reads wait for a look at the shared generation that started after
they arrived, and requests arriving together share looks."""

from __future__ import annotations

import asyncio
import threading
import time

from registry.service.cache import ReadCache, SharedGeneration


class Generations:
    """A stand-in for the database's generation row: counts looks, records when each began."""

    def __init__(self) -> None:
        self.value = 0
        self.started: list[float] = []
        self.release = threading.Event()
        self.fail = False

    def read(self) -> int:
        self.started.append(time.monotonic())
        self.release.wait(5)
        if self.fail:
            raise OSError("database down")
        return self.value


def test_shared_generation_looks_start_after_each_waiter_arrived() -> None:
    async def scenario() -> tuple[list[float], list[float], list[bool]]:
        generations, cache = Generations(), ReadCache()
        shared = SharedGeneration(cache, generations.read)
        arrived: list[float] = []

        async def request() -> bool:
            arrived.append(time.monotonic())
            return await shared.followed()

        first = asyncio.create_task(request())
        await asyncio.sleep(0.05)  # the first look is running (held) ...
        later = [asyncio.create_task(request()) for _ in range(20)]  # ... these arrive now
        await asyncio.sleep(0.05)
        generations.release.set()
        results = await asyncio.gather(first, *later)
        return arrived, generations.started, list(results)

    arrived, started, results = asyncio.run(scenario())
    assert results == [True] * 21
    assert len(started) == 2  # one look for the first request, one shared by the 20 others
    assert started[0] >= arrived[0]
    assert started[1] >= max(arrived[1:])


def test_shared_generation_follow_drops_what_another_process_changed() -> None:
    generations, cache = Generations(), ReadCache()
    generations.release.set()
    shared = SharedGeneration(cache, generations.read)
    shared.follow()
    cache.responses.put(("info",), b"{}")
    shared.follow()
    assert cache.responses.get(("info",)) == b"{}"  # same generation: kept
    generations.value = 7  # another process wrote
    shared.follow()
    assert cache.responses.get(("info",)) is None


def test_shared_generation_failed_look_answers_false() -> None:
    generations, cache = Generations(), ReadCache()
    generations.release.set()
    generations.fail = True
    shared = SharedGeneration(cache, generations.read)
    assert asyncio.run(shared.followed()) is False
