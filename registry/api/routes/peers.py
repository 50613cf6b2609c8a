"""Peers of this node (admin): add, list with health and lag, remove. No restart needed."""

from __future__ import annotations

from dataclasses import asdict

import httpx
from fastapi import APIRouter

from registry.api.deps import PeersDep, PrincipalDep
from registry.api.errors import documented
from registry.service.peers import PeerView
from registry.wire import CatchUpOut, PeerIn, PeerOut, iso_ms

router = APIRouter(prefix="/v1/peers", tags=["federation"])
IDENTIFY_SECONDS = 3.0


def peer_out(view: PeerView) -> PeerOut:
    return PeerOut(
        id=view.id,
        url=view.url,
        token_set=view.token_set,
        blobs=view.blobs,
        node_id=view.node_id,
        epoch=view.epoch,
        state=view.state,
        cursor=view.cursor,
        head=view.head,
        lag_serials=view.lag_entries,
        lag_seconds=view.lag_seconds,
        last_success=iso_ms(view.last_success_ms) if view.last_success_ms else None,
        last_error=view.last_error,
        last_error_at=iso_ms(view.last_error_ms) if view.last_error_ms else None,
        bad_blobs=view.bad_blobs,
        diverged_at=iso_ms(view.diverged_ms) if view.diverged_ms else None,
        set_aside_entries=view.set_aside,
        collisions=view.collisions,
        catch_up=CatchUpOut(**asdict(view.catch_up)),
    )


def answering_node(url: str) -> str | None:
    """The node id `url` answers with on /v1/health; None when it does not answer now (a peer
    may be added before it runs)."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/v1/health", timeout=IDENTIFY_SECONDS)
        node_id = answer.json().get("node_id") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return node_id if isinstance(node_id, str) else None


@router.post("", responses=documented(400, 401, 403, 409), status_code=201, response_model=PeerOut)
def add_peer(body: PeerIn, peers: PeersDep, principal: PrincipalDep) -> PeerOut:
    # A URL that answers as this node itself is a 409 `PeerIsSelf`.
    added = peers.add(
        principal,
        body.url,
        body.token,
        body.blobs,
        identify=answering_node,
        bootstrap=body.bootstrap,
    )
    return peer_out(added)


@router.get("", responses=documented(401, 403), response_model=list[PeerOut])
def list_peers(peers: PeersDep, principal: PrincipalDep) -> list[PeerOut]:
    return [peer_out(v) for v in peers.listing(principal)]


@router.delete("/{peer_id}", responses=documented(401, 403, 404))
def remove_peer(peer_id: str, peers: PeersDep, principal: PrincipalDep) -> dict[str, str]:
    peers.remove(principal, peer_id)
    return {"deleted": peer_id}
