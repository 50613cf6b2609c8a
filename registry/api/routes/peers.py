"""Peers of this node (admin): add, list with health and lag, remove. No restart needed."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.deps import NodeDep, PrincipalDep
from registry.metadata.db import now_ms
from registry.metadata.tables import Peer
from registry.service.auth import require_admin
from registry.service.peers import PeerService, mask
from registry.wire import PeerIn, PeerOut, iso_ms

router = APIRouter(prefix="/v1/peers", tags=["federation"])


def peer_out(peers: PeerService, peer: Peer) -> PeerOut:
    health = peers.health.get(peer.id)
    behind = peer.behind_since_ms
    return PeerOut(
        id=peer.id,
        url=peer.url,
        token=mask(peer.token),
        blobs=peer.blobs,
        node_id=peer.node_id,
        state=health.state,
        cursor=peer.cursor,
        head=peer.head,
        lag_serials=max(0, peer.head - peer.cursor),
        lag_seconds=0.0 if behind is None else (now_ms() - behind) / 1000,
        last_success=iso_ms(health.last_success_ms) if health.last_success_ms else None,
        last_error=health.last_error,
        bad_blobs=health.bad_blobs,
    )


@router.post("", status_code=201, response_model=PeerOut)
def add_peer(body: PeerIn, node: NodeDep, principal: PrincipalDep) -> PeerOut:
    require_admin(principal)
    return peer_out(node.peers, node.peers.add(body.url, body.token, body.blobs))


@router.get("", response_model=list[PeerOut])
def list_peers(node: NodeDep, principal: PrincipalDep) -> list[PeerOut]:
    require_admin(principal)
    return [peer_out(node.peers, p) for p in node.peers.list()]


@router.delete("/{peer_id}")
def remove_peer(peer_id: str, node: NodeDep, principal: PrincipalDep) -> dict[str, str]:
    require_admin(principal)
    node.peers.remove(peer_id)
    return {"deleted": peer_id}
