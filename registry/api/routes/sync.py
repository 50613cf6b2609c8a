"""Federation routes under /v1/sync: the change feed peers pull (long-poll)."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from registry.api.deps import FeedDep, PrincipalDep
from registry.api.errors import documented
from registry.domain.changes import ChangeEntry
from registry.service.feed import Reader
from registry.wire import FeedEntryOut, FeedOut, FeedPositionOut, SetAsideOut

router = APIRouter(prefix="/v1/sync", tags=["federation"])
MAX_SERIAL = 2**63 - 1  # the largest serial a database column holds
ENTRY_FIELDS = tuple(f.name for f in fields(ChangeEntry))


def entry_out(entry: ChangeEntry) -> FeedEntryOut:
    """Field by field: `asdict` would deep-copy every body (trees of many files), which cost
    most of serving a page of thousands of entries."""
    return FeedEntryOut(**entry_fields(entry))


def entry_fields(entry: ChangeEntry) -> dict[str, object]:
    """An entry as `FeedEntryOut` dumps it (the same fields, in the same order), without the
    model: validating and dumping one for each of a page's thousands of entries cost as much
    as reading them."""
    return {name: getattr(entry, name) for name in ENTRY_FIELDS}


@router.get("/changes", responses=documented(401, 409), response_model=FeedOut)
async def changes(
    feed: FeedDep,
    principal: PrincipalDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    wait: Annotated[float, Query(ge=0, le=120)] = 0,
    since_chain: Annotated[str | None, Query(max_length=64, pattern="^[0-9a-f]{64}$")] = None,
    x_modelyard_expect_node: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_modelyard_node: Annotated[str | None, Header(include_in_schema=False, max_length=200)] = None,
    x_modelyard_url: Annotated[str | None, Header(include_in_schema=False, max_length=2000)] = None,
    x_modelyard_set_aside: Annotated[int, Header(include_in_schema=False, ge=0, le=MAX_SERIAL)] = 0,
) -> JSONResponse:
    """Entries after `since`; with none, hold up to `wait` seconds for one (long-poll).
    `since_chain`, the `last_chain` of the reader's last page, is checked first: 409
    `HistoryDiverged` when this node's entry at `since` is another one now."""
    # A reader that keeps entries of this node's old history says so (shown in the status).
    reader = (
        Reader(x_modelyard_node, x_modelyard_url, x_modelyard_set_aside)
        if x_modelyard_node and not principal.anonymous
        else None
    )
    page = await feed.changes(
        principal, since, limit, wait, x_modelyard_expect_node, since_chain, reader
    )
    body = {  # FeedOut's fields, in its order (the golden feed test holds the bytes)
        "node_id": page.node_id,
        "epoch": page.epoch,
        "head": page.head,
        "last_serial": page.last_serial,
        "entries": [entry_fields(e) for e in page.entries],
        "last_chain": page.last_chain,
    }
    headers = {
        "X-Modelyard-Node": page.node_id,
        "X-Modelyard-Epoch": page.epoch,
        "X-Modelyard-Serial": str(page.head),
    }
    return JSONResponse(body, headers=headers)


@router.get("/positions/{serial}", responses=documented(401, 404), response_model=FeedPositionOut)
def position(
    serial: Annotated[int, Path(ge=1, le=MAX_SERIAL)], feed: FeedDep, _: PrincipalDep
) -> FeedPositionOut:
    """Which entry is at `serial` of this node's log: what a peer whose cursor no longer
    matches compares with what it read, to find the last entry both histories share."""
    entry = feed.position(serial)
    return FeedPositionOut(
        serial=entry.serial,
        origin=entry.origin,
        origin_serial=entry.origin_serial,
        chain=entry.chain,
    )


@router.get("/set-aside", responses=documented(401), response_model=SetAsideOut)
def set_aside(
    feed: FeedDep,
    principal: PrincipalDep,
    origin: Annotated[str, Query(min_length=1, max_length=200)],
    since: Annotated[int, Query(ge=0, le=MAX_SERIAL)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> SetAsideOut:
    """Entries of `origin`'s history this node set aside when the origin was restored from a
    backup and went on from an older point: what `modelyard recover` on it brings back."""
    entries, last = feed.set_aside(principal, origin, since, limit)
    return SetAsideOut(entries=[entry_out(e) for e in entries], last_serial=last)
