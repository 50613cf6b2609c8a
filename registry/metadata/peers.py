"""Configured peers: where they are, their stored token, and how far this node has read
their change feed."""

from __future__ import annotations

from sqlmodel import Session, col, select

from registry.domain.clock import now_ms
from registry.domain.records import PeerRecord
from registry.metadata.tables import Peer


def _record(row: Peer) -> PeerRecord:
    return PeerRecord(
        row.id,
        row.url,
        row.blobs,
        row.node_id,
        row.epoch,
        row.cursor,
        row.head,
        row.behind_since_ms,
        row.token,
        row.cursor_chain,
        row.diverged_ms,
        row.resync_to,
    )


class Peers:
    def __init__(self, session: Session) -> None:
        self._session = session

    def exists(self, peer_id: str) -> bool:
        return self._session.get(Peer, peer_id) is not None

    def get(self, peer_id: str) -> PeerRecord | None:
        row = self._session.get(Peer, peer_id)
        return None if row is None else _record(row)

    def all(self) -> list[PeerRecord]:
        """Every peer, oldest first."""
        rows = self._session.exec(select(Peer).order_by(col(Peer.created_ms))).all()
        return [_record(r) for r in rows]

    def by_url(self, url: str) -> PeerRecord | None:
        row = self._session.exec(select(Peer).where(Peer.url == url)).first()
        return None if row is None else _record(row)

    def url_of_node(self, node_id: str) -> str | None:
        """The URL of the peer that is node `node_id`, if it is one."""
        peer = self._session.exec(select(Peer).where(Peer.node_id == node_id)).first()
        return None if peer is None else peer.url

    def add(self, peer_id: str, url: str, stored_token: str | None, blobs: str) -> PeerRecord:
        row = Peer(id=peer_id, url=url, token=stored_token, blobs=blobs, created_ms=now_ms())
        self._session.add(row)
        return _record(row)

    def configure(self, peer_id: str, stored_token: str | None, blobs: str) -> PeerRecord:
        """Set a peer's token (as stored) and blob policy."""
        row = self._row(peer_id)
        row.token, row.blobs = stored_token, blobs
        self._session.add(row)
        return _record(row)

    def set_token(self, peer_id: str, stored_token: str) -> None:
        row = self._row(peer_id)
        row.token = stored_token
        self._session.add(row)

    def remove(self, peer_id: str) -> bool:
        """Forget a peer; False if there was none."""
        row = self._session.get(Peer, peer_id)
        if row is None:
            return False
        self._session.delete(row)
        return True

    def contacted(self, peer_id: str, node_id: str, epoch: str) -> PeerRecord:
        """The peer answered as node `node_id` in `epoch`."""
        row = self._row(peer_id)
        row.node_id, row.epoch = node_id, epoch
        self._session.add(row)
        return _record(row)

    def advance(self, peer_id: str, cursor: int, chain: str | None, head: int) -> None:
        """The peer's feed was applied up to `cursor` (whose entry has `chain` there); it was
        at `head` then. A resync ends once the cursor is back at the head it had."""
        peer = self._row(peer_id)
        peer.cursor, peer.cursor_chain, peer.head = cursor, chain, head
        if cursor >= head:
            peer.behind_since_ms = None
        elif peer.behind_since_ms is None:
            peer.behind_since_ms = now_ms()
        if peer.resync_to is not None and cursor >= peer.resync_to:
            peer.resync_to = None
        self._session.add(peer)

    def rewind(self, peer_id: str, cursor: int, chain: str | None, head: int, epoch: str) -> None:
        """The peer's history diverged from what was read of it: read on from `cursor`, the
        last entry both share, until back at `head` (its head now, in `epoch`)."""
        peer = self._row(peer_id)
        peer.cursor, peer.cursor_chain, peer.epoch = cursor, chain, epoch
        peer.diverged_ms, peer.resync_to = now_ms(), max(head, cursor)
        peer.head = head
        self._session.add(peer)

    def _row(self, peer_id: str) -> Peer:
        row = self._session.get(Peer, peer_id)
        assert row is not None, "the caller saw it in this transaction"
        return row
