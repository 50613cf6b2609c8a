"""A node-wide budget for the large buffers of transfers in flight.

Downloads and uploads move ~4 MiB pieces (64 KiB pieces are ~6x slower on loopback), and each
holds up to three at once (one being read or received, one queued in the socket, one being
hashed or sent). Unbounded, memory would follow the number of connections: 64 concurrent
downloads took a node to 1 GB. So a transfer takes large pieces only while the budget lasts;
past it, transfers go on with small pieces instead of waiting, slower but never refused, and
the node's memory for transfers stays near the budget whatever the number of connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LARGE = 4 * 1024 * 1024
SMALL = 256 * 1024
IN_FLIGHT = 3  # pieces one transfer may hold at once


class TransferBuffers:
    """Hands out piece sizes; used on the event loop only (no lock needed)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.taken = 0

    @contextmanager
    def piece(self, length: int | None) -> Iterator[int]:
        """The piece size for a transfer of `length` bytes (None: unknown): up to LARGE while
        the budget lasts, else SMALL; a transfer that fits in SMALL costs nothing."""
        want = LARGE if length is None else min(LARGE, length)
        cost = want * IN_FLIGHT
        if want <= SMALL or self.taken + cost > self.budget:
            yield SMALL
            return
        self.taken += cost
        try:
            yield want
        finally:
            self.taken -= cost


def transfer_buffers(app: Any) -> TransferBuffers:
    """The app's budget (`app.state.buffers`, made by create_app)."""
    buffers: TransferBuffers = app.state.buffers
    return buffers
