"""The node's Xet CAS, under `/cas` (the `casUrl` its token routes hand out), and those token
routes: what a stock `hf_xet` client calls to upload and download (xet-protocol.md §1-§2).

Every route parses, calls one `XetService` method on the threadpool, and formats. Routes the
client may try that this CAS does not serve (v2 shards, anything unknown) answer 404, never
405: the client takes a 404 as "not here, use the older route".
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from registry.api.deps import PrincipalDep, SettingsDep, XetDep, bearer_token
from registry.api.errors import error_response
from registry.api.files import blob_response
from registry.api.ingest import receive_body
from registry.api.paths import api_repo_path, public_base
from registry.domain.access import Principal
from registry.domain.errors import InvalidError, TooLargeError, XetUnsupportedError
from registry.domain.xet.grant import CasGrant
from registry.domain.xet.reconstruct import Fetch, v1_body, v2_body
from registry.domain.xet.types import XetHash
from registry.domain.xet.xorb import MAX_XORB_BYTES
from registry.service.files import Stored
from registry.service.xet import DISABLED, XetService

router = APIRouter(tags=["xet"], include_in_schema=False)
OCTETS = "application/octet-stream"
_RANGE = re.compile(r"bytes=(\d{1,20})-(\d{0,20})", re.ASCII)


async def _grant(request: Request, xet: XetDep) -> CasGrant:
    return xet.grant(bearer_token(request.scope))


GrantDep = Annotated[CasGrant, Depends(_grant)]


# -- the Hub side ---------------------------------------------------------------------------

# Where a token route sends the client while Xet is off. `hf_xet` shows the user only the
# status and the final URL of a failed token request, never the body: the URL is the message.
DISABLED_PATH = "/xet-is-off-on-this-node/set-HF_HUB_DISABLE_XET=1-and-retry"


@router.get(DISABLED_PATH)
def xet_disabled() -> Response:
    return error_response(400, XetUnsupportedError.code, DISABLED)


def _token_answer(
    request: Request,
    xet: XetService,
    settings: SettingsDep,
    principal: Principal,
    *,
    write: bool,
    create_pr: bool = False,
) -> Response:
    """A CAS token for the repo of the route (while Xet is off: the redirect that names the
    switch)."""
    if not settings.xet.enabled:
        return RedirectResponse(DISABLED_PATH, status_code=307)
    token = xet.token(principal, api_repo_path(request).repo, write=write, create_pr=create_pr)
    cas = f"{public_base(request, settings.public_url)}/cas"
    body = {"casUrl": cas, "exp": token.expires, "accessToken": token.token}
    headers = {
        "X-Xet-Cas-Url": cas,
        "X-Xet-Access-Token": token.token,
        "X-Xet-Token-Expiration": str(token.expires),
    }
    return JSONResponse(body, headers=headers)


@router.get("/api/{repo_type}/{namespace}/{name}/xet-write-token/{revision:path}")
def write_token(
    request: Request,
    xet: XetDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    create_pr: bool = False,
) -> Response:
    """A token to upload to the repo's CAS (any revision: the commit names the branch); with
    `create_pr`, for a pull request, which anyone signed in may open."""
    return _token_answer(request, xet, settings, principal, write=True, create_pr=create_pr)


@router.get("/api/{repo_type}/{namespace}/{name}/xet-read-token/{revision:path}")
def read_token(
    request: Request, xet: XetDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    return _token_answer(request, xet, settings, principal, write=False)


# -- uploads --------------------------------------------------------------------------------


@router.get("/cas/v1/chunks/{prefix}/{chunk}")
def dedup_query(chunk: str, xet: XetDep, grant: GrantDep) -> Response:
    answer = xet.dedup(grant, XetHash.parse(chunk))
    if answer is None:
        return error_response(404, "NotFound", "No stored xorb holds this chunk")
    return Response(answer, media_type=OCTETS)


@router.post("/cas/v1/xorb-grants/{prefix}/{xorb}")
def xorb_grant(xorb: str, xet: XetDep, grant: GrantDep) -> Response:
    """200 when the xorb is stored already (the client then sends nothing), else 404 (the
    client then posts the bytes to `/v1/xorbs`): no presigned uploads here."""
    if xet.has_xorb(grant, XetHash.parse(xorb)):
        return JSONResponse({})
    return error_response(404, "NotFound", "Upload the xorb to /v1/xorbs")


@router.post("/cas/v1/xorbs/{prefix}/{xorb}")
async def upload_xorb(request: Request, xorb: str, xet: XetDep, grant: GrantDep) -> Response:
    """Received, checked and stored in one pass (`XorbUpload`); the body of a xorb stored
    already is read and dropped."""
    name = XetHash.parse(xorb)
    length = request.headers.get("content-length")
    told = int(length) if length and length.isdigit() and len(length) < 19 else None
    upload = await run_in_threadpool(xet.xorb_upload, grant, name, told)
    if upload is None:
        async for _ in request.stream():  # read to its end, as the connection goes on
            pass
        return JSONResponse({"was_inserted": False})
    await receive_body(request, upload, None)
    inserted = await run_in_threadpool(xet.store_xorb, upload)
    return JSONResponse({"was_inserted": inserted})


@router.post("/cas/v1/shards")
async def upload_shard(
    request: Request, xet: XetDep, settings: SettingsDep, grant: GrantDep
) -> Response:
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_XORB_BYTES:
            raise TooLargeError(
                f"A shard is at most {MAX_XORB_BYTES} bytes", detail={"max": MAX_XORB_BYTES}
            )
    max_file = settings.limits.max_blob_bytes
    result = await run_in_threadpool(xet.put_shard, grant, bytes(data), max_file)
    return JSONResponse({"result": result})


@router.post("/cas/v1/telemetry")
def telemetry() -> Response:
    return JSONResponse({})


# -- downloads ------------------------------------------------------------------------------


def _requested(header: str | None) -> tuple[int, int | None]:
    """The [first, last] of a reconstruction's `Range: bytes=a-b` (none: the whole file)."""
    if header is None:
        return 0, None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise InvalidError(f"Malformed Range header {header[:100]!r}: use bytes=start-end")
    first, last = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    if last is not None and last < first:
        raise InvalidError(f"Range header {header[:100]!r} ends before it starts")
    return first, last


def _fetch_url(request: Request, settings: SettingsDep, xet: XetService, xorb: XetHash) -> str:
    base = public_base(request, settings.public_url)
    return f"{base}/cas/fetch/{xorb.hex}?{xet.fetch_query(xorb)}"


@router.get("/cas/v1/reconstructions/{file_id}")
def reconstruction_v1(
    request: Request, file_id: str, xet: XetDep, settings: SettingsDep, grant: GrantDep
) -> Response:
    first, last = _requested(request.headers.get("range"))
    plan = xet.reconstruction(grant, XetHash.parse(file_id), first, last)

    def url_of(fetch: Fetch) -> str:
        return _fetch_url(request, settings, xet, fetch.xorb)

    return JSONResponse(v1_body(plan, url_of))


@router.get("/cas/v2/reconstructions/{file_id}")
def reconstruction_v2(
    request: Request, file_id: str, xet: XetDep, settings: SettingsDep, grant: GrantDep
) -> Response:
    first, last = _requested(request.headers.get("range"))
    plan = xet.reconstruction(grant, XetHash.parse(file_id), first, last)

    def url_of(xorb: XetHash) -> str:
        return _fetch_url(request, settings, xet, xorb)

    return JSONResponse(v2_body(plan, url_of))


@router.get("/cas/fetch/{xorb}")
def fetch_xorb(
    request: Request, xorb: str, xet: XetDep, expires: str = "", sig: str = ""
) -> Response:
    """A xorb's stored bytes (a Range of them), for a URL a reconstruction signed."""
    found = xet.xorb_bytes(XetHash.parse(xorb), expires, sig)
    source = Stored(xet.blobs, found.blake3, found.size)
    return blob_response(source, {}, range_header=request.headers.get("range"))


@router.api_route(
    "/cas/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
)
def unknown(rest: str) -> Response:
    """Whatever else a client tries (v2 shards, a HEAD of a xorb): 404, never 405."""
    return error_response(404, "NotFound", f"The CAS does not serve /{rest[:200]}")
