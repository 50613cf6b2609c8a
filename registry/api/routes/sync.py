"""Federation routes under /v1/sync: the change feed peers pull (long-poll)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.api.deps import NodeDep, PrincipalDep
from registry.api.errors import documented
from registry.domain.errors import PeerMismatchError
from registry.wire import FeedEntryOut, FeedOut

router = APIRouter(prefix="/v1/sync", tags=["federation"])


@router.get("/changes", responses=documented(401, 409), response_model=FeedOut)
async def changes(
    request: Request,
    node: NodeDep,
    principal: PrincipalDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    wait: Annotated[float, Query(ge=0, le=120)] = 0,
) -> JSONResponse:
    """Entries after `since`; with none, hold up to `wait` seconds for one (long-poll)."""
    expected = request.headers.get("x-modelyard-expect-node")
    if expected and expected != node.identity.node_id:
        raise PeerMismatchError(
            f"This is node {node.identity.node_id}, not {expected}: it was replaced or reset; "
            "re-add it as a peer deliberately",
            detail={"node_id": node.identity.node_id, "expected": expected},
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:  # wakes on every committed write; bounded by `wait`
        event = node.notifier.current()
        page = await run_in_threadpool(node.feed.page, principal, since, limit)
        remaining = deadline - loop.time()
        if page.last_serial != since or remaining <= 0:
            break
        await node.notifier.wait(event, remaining)
    body = FeedOut(
        node_id=node.identity.node_id,
        epoch=node.identity.epoch,
        head=page.head,
        last_serial=page.last_serial,
        entries=[FeedEntryOut(**asdict(e)) for e in page.entries],
    )
    headers = {
        "X-Modelyard-Node": node.identity.node_id,
        "X-Modelyard-Epoch": node.identity.epoch,
        "X-Modelyard-Serial": str(page.head),
    }
    return JSONResponse(body.model_dump(), headers=headers)
