"""Pulls one peer's change feed and applies it; the cursor moves only with the batch."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass

from registry.client import RegistryClient, RetryPolicy
from registry.domain.changes import ChangeEntry
from registry.domain.errors import CursorAheadError, HistoryDivergedError
from registry.domain.records import PeerRecord
from registry.domain.replication import FeedPosition
from registry.service.replication import ReplicationService
from registry.settings import SyncSettings
from registry.wire import FeedOut
from sync.connect import PeerConnector
from sync.fetcher import BlobFetcher
from sync.planner import plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ahead:
    """The next page, asked for while the last one is applied: used only if the cursor is then
    where it was read from (in memory only: a crash or a failed apply just drops it)."""

    client: RegistryClient
    since: int
    since_chain: str | None
    page: Future[FeedOut]


class Puller:
    def __init__(
        self,
        peer_id: str,
        connect: PeerConnector,
        replication: ReplicationService,
        fetcher: BlobFetcher,
        settings: SyncSettings,
    ) -> None:
        self.peer_id = peer_id
        self._connect = connect
        self._peers = connect.peers
        self._replication = replication
        self._fetcher = fetcher
        self._settings = settings
        self._client: RegistryClient | None = None
        self._client_key: tuple[str, str | None] | None = None
        self._ahead: Ahead | None = None  # at most one page: memory stays bounded

    def close(self) -> None:
        self._ahead = None
        if self._client is not None:
            self._client.close()

    def _client_for(self, peer: PeerRecord) -> RegistryClient:
        """One client while the peer's URL and token stay as they are."""
        if self._client is None or self._client_key != (peer.url, peer.stored_token):
            self.close()
            self._client = self._connect.client(peer, RetryPolicy(attempts=1))
            self._client_key = (peer.url, peer.stored_token)
        return self._client

    def pull_once(self) -> int:
        """One long-poll and its application; returns the number of entries received. A peer
        whose history is no longer the one read (restored from a backup, or reset) is resynced
        first: see `resync`."""
        peer = self._peers.get(self.peer_id)
        client = self._client_for(peer)
        try:
            feed = self._page(client, peer)
        except (CursorAheadError, HistoryDivergedError) as exc:
            self.resync(peer, client, exc.message)
            return 0
        news = bool(feed.entries) and feed.last_serial >= feed.head
        with self._fetcher.live.applying() if news else nullcontext():
            peer, epoch_changed = self._peers.contact(self.peer_id, feed.node_id, feed.epoch)
            if epoch_changed and peer.cursor:
                self.resync(peer, client, f"its epoch changed to {feed.epoch}")
                return 0
            if feed.last_serial < feed.head:  # more to read: ask for it while this page applies
                self._ahead = Ahead(
                    client,
                    feed.last_serial,
                    feed.last_chain,
                    self._fetch_ahead(client, peer, feed),
                )
            entries = [ChangeEntry(**dict(e)) for e in feed.entries]  # shallow: bodies shared
            page = FeedPosition(feed.last_serial, feed.last_chain, feed.head)
            missing = self._replication.apply(self.peer_id, entries, page, plan)
        if missing and peer.blobs == "eager":
            self._fetcher.enqueue(missing, first=self.peer_id)
        return len(entries)

    def _page(self, client: RegistryClient, peer: PeerRecord) -> FeedOut:
        """The page after the peer's cursor: the one asked for ahead if it was read from there
        (with the same client), else one asked for now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.client, ahead.since, ahead.since_chain) == (
            client,
            peer.cursor,
            peer.cursor_chain,
        ):
            return ahead.page.result()
        # catching up: more than a page behind, or not contacted yet (a new peer reads from 0)
        behind = peer.node_id is None or peer.head - peer.cursor > self._settings.batch
        return self._fetch(client, peer, peer.cursor, peer.cursor_chain, behind)

    def _fetch(
        self,
        client: RegistryClient,
        peer: PeerRecord,
        since: int,
        since_chain: str | None,
        behind: bool,
    ) -> FeedOut:
        return client.changes(
            since,
            limit=self._settings.catchup_batch if behind else self._settings.batch,
            wait=self._settings.long_poll,
            expect_node=peer.node_id,
            since_chain=since_chain,
            set_aside=self._replication.set_aside(peer.node_id) if peer.node_id else 0,
            reader_url=self._connect.public_url,
        )

    def _fetch_ahead(
        self, client: RegistryClient, peer: PeerRecord, feed: FeedOut
    ) -> Future[FeedOut]:
        """The page after `feed`, fetched on a thread of its own (a daemon, as the puller's: a
        stop never waits for it)."""
        behind = feed.head - feed.last_serial > self._settings.batch
        args = (client, peer, feed.last_serial, feed.last_chain, behind)
        future: Future[FeedOut] = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._fetch(*args))
            except BaseException as exc:  # handed to whoever takes the page
                future.set_exception(exc)

        threading.Thread(target=run, name=f"prefetch-{self.peer_id}", daemon=True).start()
        return future

    def resync(self, peer: PeerRecord, client: RegistryClient, reason: str) -> None:
        """The peer's history diverged from what was read of it: find the last of its own
        entries both histories share (a binary search over those held here, however they came,
        asking the peer which entry it has at each serial), set aside the entries of its old
        history, and read on from there (or from the cursor, if that is earlier)."""
        node = peer.node_id
        held = self._replication.chains(node) if node else []
        low, high = 0, len(held)  # held[:low] are shared, held[high:] are not
        while low < high:
            middle = (low + high) // 2
            serial, chain = held[middle]
            there = client.position(serial)
            shared = there is not None and (there.origin, there.origin_serial, there.chain) == (
                node,
                serial,
                chain,
            )
            low, high = (middle + 1, high) if shared else (low, middle)
        common: tuple[int, str | None] = held[low - 1] if low else (0, None)
        after, at = common
        cursor, at = (after, at) if after < peer.cursor else (peer.cursor, peer.cursor_chain)
        health = client.health()  # its head and epoch now: the epoch is not news after this
        set_aside = self._replication.rewind(
            self.peer_id, node or "", after, cursor, at, health.serial, health.epoch
        )
        head = health.serial
        logger.warning(
            "peer history diverged peer=%s reason=%s; resync from serial %d to %d, %d entries "
            "of its old history set aside",
            self.peer_id,
            reason,
            after,
            head,
            set_aside,
        )
