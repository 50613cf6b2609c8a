"""Snapshot routes under /v1/sync: a joining peer's starting point, and a digest of the state."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from registry.api.deps import PrincipalDep, SnapshotDep
from registry.api.errors import documented
from registry.wire import StateDigestOut

router = APIRouter(prefix="/v1/sync", tags=["federation"])


@router.get(
    "/snapshot",
    responses={**documented(401), 200: {"content": {"application/x-ndjson": {}}}},
    response_class=StreamingResponse,
)
def snapshot(snapshots: SnapshotDep, principal: PrincipalDep) -> StreamingResponse:
    """The replicable state at this node's head serial N, as NDJSON: a header (node, epoch,
    serial N, chain at N), the change entries that still say something (private repos' only
    for a reader who may see them), and a trailer with their count and the BLAKE3 of every
    line before it. A joining peer applies it, then follows `/v1/sync/changes?since=N`."""
    header = snapshots.header()
    headers = {
        "X-Modelyard-Node": header.node_id,
        "X-Modelyard-Epoch": header.epoch,
        "X-Modelyard-Serial": str(header.serial),
    }
    body = snapshots.stream(principal, header)
    return StreamingResponse(body, media_type="application/x-ndjson", headers=headers)


@router.get("/state-digest", responses=documented(401), response_model=StateDigestOut)
def state_digest(snapshots: SnapshotDep, principal: PrincipalDep) -> StateDigestOut:
    """A digest of the replicable state the reader may see (repos, homes, incarnations,
    settings, refs with home versions, commits): equal on two nodes that agree."""
    found = snapshots.state_digest(principal)
    return StateDigestOut(digest=found.digest, repos=found.repos)
