"""What a background job that derives its work from state remembers of a pass that found
nothing: what it saw then (the change log's head and the number of stored blobs). While that
has not moved, the next passes skip the walk for up to RECHECK seconds: an idle node pays two
small queries a pass, not a walk of every tree."""

from __future__ import annotations

import time
from collections.abc import Hashable

RECHECK = 600.0  # seconds an idle job trusts "nothing moved" before it looks again anyway


class IdleWatch:
    def __init__(self, recheck: float = RECHECK) -> None:
        self._recheck = recheck
        self._empty: tuple[Hashable, float] | None = None  # (what was seen, when)

    def unchanged(self, seen: Hashable) -> bool:
        """True when the last pass found nothing, saw `seen` too, and not long ago."""
        if self._empty is None:
            return False
        before, since = self._empty
        return before == seen and time.monotonic() - since < self._recheck

    def found(self, anything: bool, seen: Hashable) -> None:
        """Note what a pass found: nothing (remember `seen`) or some work (forget it)."""
        self._empty = None if anything else (seen, time.monotonic())
