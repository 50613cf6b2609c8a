"""Blocking work (the database, the blob store) called from a coroutine."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

T = TypeVar("T")


async def on_thread(call: Callable[..., T], *args: object) -> T:
    """Run `call(*args)` on the worker threads the HTTP routes use, off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args))
