"""How this node opens a client to one of its peers: with its own id, the peer's token (opened
only here, when it is sent), and the node's rule for redirects."""

from __future__ import annotations

from dataclasses import dataclass

from registry import __version__
from registry.client import RegistryClient, RetryPolicy
from registry.client.redirects import RedirectGuard
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

    def headers(self, peer: PeerRecord) -> dict[str, str]:
        """What a request to the peer outside RegistryClient sends (the blob fetcher's ranged
        GETs): the same identity and token."""
        headers = {
            "user-agent": f"modelyard/{__version__} node/{self.node_id}",
            "x-modelyard-node": self.node_id,
        }
        token = self.peers.credential(peer)
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def guard(self) -> RedirectGuard:
        return RedirectGuard(self.allow_private_redirects)
