"""Peers of this node (admin): add, list with health and lag, remove. No restart needed."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.deps import PeersDep, PrincipalDep
from registry.api.errors import documented
from registry.service.peers import PeerView
from registry.wire import PeerIn, PeerOut, iso_ms

router = APIRouter(prefix="/v1/peers", tags=["federation"])


def peer_out(view: PeerView) -> PeerOut:
    return PeerOut(
        id=view.id,
        url=view.url,
        token_set=view.token_set,
        blobs=view.blobs,
        node_id=view.node_id,
        state=view.state,
        cursor=view.cursor,
        head=view.head,
        lag_serials=view.lag_entries,
        lag_seconds=view.lag_seconds,
        last_success=iso_ms(view.last_success_ms) if view.last_success_ms else None,
        last_error=view.last_error,
        bad_blobs=view.bad_blobs,
        diverged_at=iso_ms(view.diverged_ms) if view.diverged_ms else None,
        set_aside_entries=view.set_aside,
        collisions=view.collisions,
    )


@router.post("", responses=documented(400, 401, 403, 409), status_code=201, response_model=PeerOut)
def add_peer(body: PeerIn, peers: PeersDep, principal: PrincipalDep) -> PeerOut:
    return peer_out(peers.add(principal, body.url, body.token, body.blobs))


@router.get("", responses=documented(401, 403), response_model=list[PeerOut])
def list_peers(peers: PeersDep, principal: PrincipalDep) -> list[PeerOut]:
    return [peer_out(v) for v in peers.listing(principal)]


@router.delete("/{peer_id}", responses=documented(401, 403, 404))
def remove_peer(peer_id: str, peers: PeersDep, principal: PrincipalDep) -> dict[str, str]:
    peers.remove(principal, peer_id)
    return {"deleted": peer_id}
