"""Pulls one peer's change feed and applies it; the cursor moves only with the batch."""

from __future__ import annotations

import logging

from registry.client import RegistryClient, RetryPolicy
from registry.domain.changes import ChangeEntry
from registry.domain.records import PeerRecord
from registry.service.replication import ReplicationService
from registry.settings import SyncSettings
from sync.connect import PeerConnector
from sync.fetcher import BlobFetcher
from sync.planner import plan

logger = logging.getLogger(__name__)


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

    def close(self) -> None:
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
        """One long-poll and its application; returns the number of entries received."""
        peer = self._peers.get(self.peer_id)
        since = peer.cursor
        feed = self._client_for(peer).changes(
            since,
            limit=self._settings.batch,
            wait=self._settings.long_poll,
            expect_node=peer.node_id,
        )
        peer = self._peers.contact(self.peer_id, feed.node_id, feed.epoch)
        if peer.cursor != since:
            return 0  # the peer's epoch changed: start over from its new history
        entries = [ChangeEntry(**e.model_dump()) for e in feed.entries]
        missing = self._replication.apply(self.peer_id, entries, feed.last_serial, feed.head, plan)
        if missing and peer.blobs == "eager":
            self._fetcher.enqueue(missing, first=self.peer_id)
        return len(entries)
