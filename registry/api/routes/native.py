"""Native API under /v1: health and blobs by BLAKE3."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from registry import __version__
from registry.api.deps import (
    FilesDep,
    IdentityDep,
    LineageDep,
    LookupDep,
    PrincipalDep,
    ReadsDep,
    StatusDep,
    UploadsDep,
)
from registry.api.errors import RETRY_AFTER_SECONDS, documented
from registry.api.files import blob_response, bytes_route_docs
from registry.api.ingest import BYTES_BODY, receive_body
from registry.api.paths import parse_repo
from registry.domain.digest import Digest
from registry.domain.errors import DatabaseUnavailableError
from registry.storage import Expected
from registry.wire import BlobStored, FileHitOut, Health, LineageOut, Readiness

router = APIRouter(prefix="/v1", tags=["native"])


@router.get("/health", response_model=Health, responses=documented(503))
def health(identity: IdentityDep, status: StatusDep) -> Health:
    """The node, its change log's head and whether it takes writes (peers probe this); 503
    while its database does not answer (its serial is not known then)."""
    now = status.health()
    if now.serial is None:
        raise DatabaseUnavailableError(" ".join(now.problems))
    return Health(
        status="ok" if now.writable else "degraded",
        node_id=identity.node_id,
        version=__version__,
        serial=now.serial,
        epoch=identity.epoch,
        writable=now.writable,
        disk=now.disk.state,
        disk_free_bytes=now.disk.free,
        database=now.database,
        blob_store=now.blob_store,
        problems=now.problems,
    )


@router.get("/health/live")
def live() -> dict[str, str]:
    """Liveness: the process answers (a restart would not help with a full disk or a
    database that is down; see /v1/health/ready)."""
    return {"status": "alive"}


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(status: StatusDep) -> JSONResponse:
    """Readiness: 200 when the node can take writes now, 503 (with why) while its disk is
    full or unwritable or its database does not answer: a load balancer routes around it."""
    now = status.health()
    body = Readiness(
        ready=now.writable,
        disk=now.disk.state,
        database=now.database,
        blob_store=now.blob_store,
        problems=now.problems,
    )
    headers = {} if now.writable else {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(
        body.model_dump(), status_code=200 if now.writable else 503, headers=headers
    )


def get_blob(blake3: str, request: Request, files: FilesDep, principal: PrincipalDep) -> Response:
    stored = files.blob(principal, Digest.parse(blake3))
    return blob_response(
        stored,
        {"ETag": f'"{stored.digest.hex}"'},
        head=request.method == "HEAD",
        range_header=request.headers.get("range"),
    )


for _method in ("GET", "HEAD"):
    router.api_route(
        "/blobs/{blake3}",
        methods=[_method],
        response_class=Response,
        operation_id=f"{_method.lower()}_blob",
        **bytes_route_docs(_method),
    )(get_blob)


@router.put(
    "/blobs/{blake3}",
    status_code=201,
    response_model=BlobStored,
    responses={200: {"model": BlobStored}, **documented(400, 401, 403)},
    openapi_extra=BYTES_BODY,
)
async def put_blob(
    blake3: str, request: Request, uploads: UploadsDep, principal: PrincipalDep
) -> JSONResponse:
    digest = Digest.parse(blake3)
    length = request.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    existing = await run_in_threadpool(uploads.reuse, principal, digest)
    if existing is not None:
        return JSONResponse(
            BlobStored(
                blake3=digest.hex, sha256=existing.sha256, size=existing.size, created=False
            ).model_dump()
        )
    writer = uploads.writer(size)
    await receive_body(request, writer, size)
    hashes = await run_in_threadpool(uploads.complete, writer, Expected(blake3=digest, size=size))
    return JSONResponse(
        BlobStored(
            blake3=digest.hex, sha256=hashes.sha256, size=hashes.size, created=True
        ).model_dump(),
        status_code=201,
    )


@router.get(
    "/files/by-hash/{file_hash}", responses=documented(400, 401), response_model=list[FileHitOut]
)
def files_by_hash(file_hash: str, lookup: LookupDep, principal: PrincipalDep) -> list[FileHitOut]:
    """Every repo, ref and path holding a file with this BLAKE3, SHA-256, AutoV2, or (a
    safetensors file) AutoV3, AutoV1 or SHA-256 after its header (kohya's sshs_model_hash)."""
    return [FileHitOut(**asdict(hit)) for hit in lookup.by_hash(principal, file_hash)]


@router.get(
    "/repos/{repo_type}/{namespace}/{name}/manifest/{revision:path}",
    responses=documented(400, 401, 404),
)
def manifest(
    repo_type: str,
    namespace: str,
    name: str,
    revision: str,
    reads: ReadsDep,
    principal: PrincipalDep,
) -> JSONResponse:
    """The files of a revision with their size, BLAKE3 and SHA-256 (`modelyard.manifest/1`)."""
    repo = parse_repo(f"{repo_type}s", namespace, name)
    return JSONResponse(reads.manifest(principal, repo, revision).to_json())


@router.get(
    "/repos/{repo_type}/{namespace}/{name}/lineage",
    responses=documented(401, 404),
    response_model=LineageOut,
)
def lineage(
    repo_type: str, namespace: str, name: str, lineage: LineageDep, principal: PrincipalDep
) -> LineageOut:
    """The parents a repo's card declares, and its ancestors and descendants, transitively."""
    repo = parse_repo(f"{repo_type}s", namespace, name)
    return LineageOut.model_validate(asdict(lineage.lineage(principal, repo)))
