"""The status page a person reads at a glance (templates/status.html): HTML, no JavaScript,
refreshes itself. This module owns how its numbers read: sizes, durations and times."""

from __future__ import annotations

from typing import Any

from registry.service.status import Status
from registry.wire import iso_ms

REFRESH_SECONDS = 10


def template_context(s: Status) -> dict[str, Any]:
    """The template's values: the status, and the helpers it formats numbers with (the shared
    page environment has no filters for these)."""
    return {"s": s, "refresh": REFRESH_SECONDS, "size": _size, "duration": _duration, "when": _when}


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m {secs}s"


def _when(ms: int | None) -> str:
    """A time as the API writes it, or "never" for a time that has not come yet."""
    return iso_ms(ms) if ms else "never"
