"""Federation routes under /v1/sync: the change feed peers pull (long-poll)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from registry.api.deps import FeedDep, PrincipalDep
from registry.api.errors import documented
from registry.wire import FeedEntryOut, FeedOut

router = APIRouter(prefix="/v1/sync", tags=["federation"])


@router.get("/changes", responses=documented(401, 409), response_model=FeedOut)
async def changes(
    feed: FeedDep,
    principal: PrincipalDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    wait: Annotated[float, Query(ge=0, le=120)] = 0,
    x_modelyard_expect_node: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    """Entries after `since`; with none, hold up to `wait` seconds for one (long-poll)."""
    page = await feed.changes(principal, since, limit, wait, x_modelyard_expect_node)
    body = FeedOut(
        node_id=page.node_id,
        epoch=page.epoch,
        head=page.head,
        last_serial=page.last_serial,
        entries=[FeedEntryOut(**asdict(e)) for e in page.entries],
    )
    headers = {
        "X-Modelyard-Node": page.node_id,
        "X-Modelyard-Epoch": page.epoch,
        "X-Modelyard-Serial": str(page.head),
    }
    return JSONResponse(body.model_dump(), headers=headers)
