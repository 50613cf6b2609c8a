"""The change feed peers pull: entries after a serial, filtered by what the reader may see.

Theory of operation: serials are gap-free and committed in order (see metadata/db.py), so a
page "entries with serial > since, in order" never skips one. Entries of private repos are
left out for readers that may not see them, but `last_serial` still moves past them, so the
reader's cursor never stalls on what it may not read. A long-poll waits on `ChangeNotifier`,
which every write this process commits fires; when several processes share the database, it
also looks again every `poll` seconds, for writes the other processes made. When the node
stops, `ChangeNotifier.close()` answers every open long-poll at once with what it has (usually
nothing, and the head), so a peer's long-poll never holds the stop.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from registry.domain.access import Principal, may_read
from registry.domain.changes import ChangeEntry
from registry.domain.clock import now_ms
from registry.domain.errors import (
    CursorAheadError,
    HistoryDivergedError,
    NotFoundError,
    PeerMismatchError,
)
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.service.offload import on_thread

LOST = "lost-history:"  # node values: a reader that keeps entries of this node's old history


@dataclass(frozen=True)
class Reader:
    """Who reads the feed, as it says in its request: its node id, its URL if it has a public
    one, and how many entries of this node's old history it keeps (this node was restored)."""

    node: str
    url: str | None
    set_aside: int


@dataclass(frozen=True)
class LostHistory:
    """A peer that keeps what this node lost in a restore: `modelyard recover --from url`."""

    node: str
    url: str | None
    entries: int
    since_ms: int


@dataclass(frozen=True)
class FeedPage:
    node_id: str
    epoch: str
    head: int
    last_serial: int  # the last serial examined; the reader's next `since`
    entries: list[ChangeEntry]
    last_chain: str | None  # the chain of the entry at `last_serial`: the reader sends it back


def lost_history(tx: Tx) -> list[LostHistory]:
    """The peers that keep entries of this node's old history, as they last said."""
    lost = []
    for key, text in sorted(tx.values.with_prefix(LOST).items()):
        value = json.loads(text)
        node = key.removeprefix(LOST)
        lost.append(LostHistory(node, value["url"], value["entries"], value["since_ms"]))
    return lost


def may_read_entry(principal: Principal, entry: ChangeEntry) -> bool:
    return may_read(principal, private=entry.private, namespace=entry.repo.split("/")[1])


class FeedService:
    def __init__(
        self,
        db: Database,
        node: NodeIdentity,
        notifier: ChangeNotifier,
        max_page_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._db = db
        self._node = node
        self._notifier = notifier
        self._max_bytes = max_page_bytes

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake long-polls on `loop` (the HTTP server's) when a write commits."""
        self._notifier.bind(loop)

    async def changes(
        self,
        principal: Principal,
        since: int,
        limit: int,
        wait: float,
        expect_node: str | None = None,
        since_chain: str | None = None,
        reader: Reader | None = None,
    ) -> FeedPage:
        """Entries after `since`; with none, hold up to `wait` seconds for one (long-poll).
        `since_chain` is the chain the reader saw at `since` (the `last_chain` of its last
        page), checked first.

        Raises:
            PeerMismatchError: the reader expects another node (this one was replaced).
            CursorAheadError: `since` is beyond this node's head (another history).
            HistoryDivergedError: the entry at `since` is not the one the reader saw there.
        """
        if expect_node and expect_node != self._node.node_id:
            raise PeerMismatchError(
                f"This is node {self._node.node_id}, not {expect_node}: it was replaced or "
                "reset; re-add it as a peer deliberately",
                detail={"node_id": self._node.node_id, "expected": expect_node},
            )
        if reader is not None:
            await on_thread(self.note_reader, reader)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:  # wakes on every committed write; bounded by `wait`
            event = self._notifier.current()
            page = await on_thread(self.page, principal, since, limit, since_chain)
            remaining = deadline - loop.time()
            if page.last_serial != since or remaining <= 0 or self._notifier.closed:
                return page
            await self._notifier.wait(event, remaining)

    def note_reader(self, reader: Reader) -> None:
        """Remember a reader that keeps entries of this node's old history (and forget it once
        it keeps none): the status shows where to recover them from."""
        key = LOST + reader.node
        with self._db.read() as tx:
            held = tx.values.get(key)
        if held is None and not reader.set_aside:
            return
        known = json.loads(held) if held else {}
        if (known.get("url"), known.get("entries", 0)) == (reader.url, reader.set_aside):
            return
        with self._db.write(invalidates=False) as tx:
            if reader.set_aside:
                since = known.get("since_ms") or now_ms()
                value = {"url": reader.url, "entries": reader.set_aside, "since_ms": since}
                tx.values.put(key, json.dumps(value))
            else:
                tx.values.delete(key)

    def head(self) -> int:
        """The serial of the newest entry (0 for an empty log)."""
        return self._db.head_serial()

    def page(
        self, principal: Principal, since: int, limit: int, since_chain: str | None = None
    ) -> FeedPage:
        with self._db.read() as tx:
            head = tx.changes.head()
            if since > head:
                raise CursorAheadError(
                    f"Cursor {since} is beyond this node's head serial {head}: it belongs to "
                    "another history (was the node reset?)",
                    detail={"since": since, "head": head},
                )
            at = tx.changes.at(since) if since and since_chain else None
            if at is not None and at.chain is not None and at.chain != since_chain:
                raise HistoryDivergedError(
                    f"The entry at serial {since} is not the one read there before: this "
                    "node's history was restored or reset and went on since",
                    detail={"since": since, "head": head},
                )
            logged = tx.changes.page(since, limit)
        entries: list[ChangeEntry] = []
        last, size, chain = since, 0, since_chain
        for item in logged:
            if entries and size + item.size > self._max_bytes:
                break  # bounded by bytes too; the rest comes in the next page
            last, chain = item.entry.serial, item.entry.chain
            if may_read_entry(principal, item.entry):
                size += item.size
                entries.append(item.entry)
        return FeedPage(self._node.node_id, self._node.epoch, head, last, entries, chain)

    def set_aside(
        self, principal: Principal, origin: str, since: int, limit: int
    ) -> tuple[list[ChangeEntry], int]:
        """Entries of `origin`'s history this node set aside when the origin went back to an
        older one (restored), after serial `since`: what `modelyard recover` on the origin
        brings back. Those of private repos only to a reader who may see them. With the last
        serial examined (the reader's next `since`)."""
        with self._db.read() as tx:
            found = tx.changes.set_aside(origin, since, limit)
        last = found[-1].serial if found else since
        return [e for e in found if may_read_entry(principal, e)], last

    def position(self, serial: int) -> ChangeEntry:
        """The entry at `serial` of this log (a diverged reader looks for the last one it
        shares; serials, origins and chains tell nothing of a private repo).

        Raises:
            NotFoundError: no entry there.
        """
        with self._db.read() as tx:
            entry = tx.changes.at(serial)
        if entry is None:
            raise NotFoundError(f"No entry at serial {serial}")
        return entry


class ChangeNotifier:
    """Wakes long-polls when a write commits (writes happen on worker threads)."""

    def __init__(self, poll: float | None = None) -> None:
        self._poll = poll  # seconds: the longest wait between looks at the feed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.closed = False  # the node stops: nobody waits any more

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event | None:
        """Take this before reading the feed, then wait on it: no wake-up is lost."""
        return self._event

    def notify(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def close(self) -> None:
        """Wake every waiter for good; safe from any thread."""
        self.closed = True
        self.notify()

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    async def wait(self, event: asyncio.Event | None, timeout: float) -> None:
        if event is None or self.closed:
            return
        try:
            await asyncio.wait_for(event.wait(), min(timeout, self._poll or timeout))
        except TimeoutError:
            pass
