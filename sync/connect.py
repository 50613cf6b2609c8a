"""How this node opens a client to one of its peers: with its own id, the peer's token (opened
only here, when it is sent), and the node's rule for redirects."""

from __future__ import annotations

from dataclasses import dataclass

from registry.client import RegistryClient, RetryPolicy
from registry.domain.records import PeerRecord
from registry.service.peers import PeerService


@dataclass(frozen=True)
class PeerConnector:
    peers: PeerService
    node_id: str
    allow_private_redirects: bool = False
    public_url: str | None = None  # told to peers, so a restored one knows where to recover from

    def client(self, peer: PeerRecord, retry: RetryPolicy, timeout: float = 30.0) -> RegistryClient:
        return RegistryClient(
            peer.url,
            token=self.peers.credential(peer),
            node_id=self.node_id,
            timeout=timeout,
            retry=retry,
            allow_private_redirects=self.allow_private_redirects,
        )
