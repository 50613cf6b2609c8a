"""The change feed peers pull: entries after a serial, filtered by what the reader may see.

Theory of operation: serials are gap-free and committed in order (see metadata/db.py), so a
page "entries with serial > since, in order" never skips one. Entries of private repos are
left out for readers that may not see them, but `last_serial` still moves past them, so the
reader's cursor never stalls on what it may not read. A long-poll waits on `ChangeNotifier`,
which every write this process commits fires; when several processes share the database, it
also looks again every `poll` seconds, for writes the other processes made.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from sqlmodel import col, select

from registry.domain.errors import CursorAheadError
from registry.domain.replication import Entry
from registry.metadata.db import Database
from registry.metadata.tables import Change, Counter
from registry.service.auth import Principal


@dataclass(frozen=True)
class FeedPage:
    head: int
    last_serial: int  # the last serial examined; the reader's next `since`
    entries: list[Entry]


def may_read_entry(principal: Principal, change: Change) -> bool:
    namespace = change.repo.split("/")[1]
    return not change.private or principal.is_admin or principal.user == namespace


class FeedService:
    def __init__(self, db: Database, max_page_bytes: int = 4 * 1024 * 1024) -> None:
        self._db = db
        self._max_bytes = max_page_bytes

    def head(self) -> int:
        """The serial of the newest entry (0 for an empty log)."""
        return self._db.head_serial()

    def page(self, principal: Principal, since: int, limit: int) -> FeedPage:
        with self._db.read() as session:
            counter = session.get(Counter, "serial")
            head = counter.value if counter else 0
            if since > head:
                raise CursorAheadError(
                    f"Cursor {since} is beyond this node's head serial {head}: it belongs to "
                    "another history (was the node reset?)",
                    detail={"since": since, "head": head},
                )
            rows = session.exec(
                select(Change)
                .where(col(Change.serial) > since)
                .order_by(col(Change.serial))
                .limit(limit)
            ).all()
        entries: list[Entry] = []
        last, size = since, 0
        for row in rows:
            if entries and size + len(row.body) > self._max_bytes:
                break  # bounded by bytes too; the rest comes in the next page
            last = row.serial
            if may_read_entry(principal, row):
                size += len(row.body)
                entries.append(_entry(row))
        return FeedPage(head, last, entries)


def _entry(row: Change) -> Entry:
    return Entry(
        row.serial,
        row.origin,
        row.origin_serial,
        row.kind,
        row.repo,
        row.private,
        json.loads(row.body),
        row.created_ms,
    )


class ChangeNotifier:
    """Wakes long-polls when a write commits (writes happen on worker threads)."""

    def __init__(self, poll: float | None = None) -> None:
        self._poll = poll  # seconds: the longest wait between looks at the feed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event | None:
        """Take this before reading the feed, then wait on it: no wake-up is lost."""
        return self._event

    def notify(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    async def wait(self, event: asyncio.Event | None, timeout: float) -> None:
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), min(timeout, self._poll or timeout))
        except TimeoutError:
            pass
