"""Configured peers: where they are, their sealed token, and how far this node has read
their change feed."""

from __future__ import annotations

from sqlmodel import Session, select

from registry.domain.clock import now_ms
from registry.metadata.tables import Peer


class Peers:
    def __init__(self, session: Session) -> None:
        self._session = session

    def exists(self, peer_id: str) -> bool:
        return self._session.get(Peer, peer_id) is not None

    def url_of_node(self, node_id: str) -> str | None:
        """The URL of the peer that is node `node_id`, if it is one."""
        peer = self._session.exec(select(Peer).where(Peer.node_id == node_id)).first()
        return None if peer is None else peer.url

    def advance(self, peer_id: str, cursor: int, head: int) -> None:
        """The peer's feed was applied up to `cursor`; it was at `head` then."""
        peer = self._session.get(Peer, peer_id)
        assert peer is not None, "the caller saw it in this transaction"
        peer.cursor, peer.head = cursor, head
        if cursor >= head:
            peer.behind_since_ms = None
        elif peer.behind_since_ms is None:
            peer.behind_since_ms = now_ms()
        self._session.add(peer)
