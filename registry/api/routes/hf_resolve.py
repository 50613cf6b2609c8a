"""`/resolve/`: file downloads exactly as the Hub serves them (HEAD contract, Range, ETags).

The route is `async`: a HEAD for a commit seen before is answered from the read cache on the
event loop; anything else is looked up on the threadpool.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from registry.api.deps import NodeDep, PrincipalDep
from registry.api.files import (
    blob_response,
    bytes_route_docs,
    replica_headers,
    resolve_headers,
    scan_headers,
)
from registry.api.paths import parse_repo, raw_segments
from registry.domain.commit import TreeEntry
from registry.domain.errors import BlobUnavailableError
from registry.domain.names import RepoId
from registry.service.reads import Snapshot
from registry.service.services import PullThrough

router = APIRouter(tags=["huggingface"])


def _lookup(
    node: NodeDep, principal: PrincipalDep, repo: RepoId, revision: str, path: str
) -> tuple[Snapshot, TreeEntry]:
    snap = node.reads.snapshot(principal, repo, revision)
    return snap, node.reads.file(snap, path)


async def _resolve(request: Request, node: NodeDep, principal: PrincipalDep) -> Response:
    parts = raw_segments(request)
    plural = "datasets" if parts[0] == "datasets" and parts[3] == "resolve" else "models"
    if plural == "datasets":
        parts = parts[1:]
    repo = parse_repo(plural, parts[0], parts[1])
    revision, path = parts[3], "/".join(parts[4:])
    cached = await node.reads.cached_snapshot(principal, repo, revision)
    hit = node.reads.cached_file(cached, path) if cached else None
    if cached is not None and hit is not None:
        snap, entry = cached, hit
    else:  # not all cached: look up on the threadpool
        snap, entry = await run_in_threadpool(_lookup, node, principal, repo, revision, path)
    head = request.method == "HEAD"  # answered from metadata: the bytes may follow
    if not head and request.headers.get("range", "bytes=0-").startswith("bytes=0-"):
        node.downloads.count(snap.repo.id)
    headers = {
        **resolve_headers(snap.commit.id, entry),
        **replica_headers(node.peers, node.identity.node_id, snap.repo),
        **scan_headers(node.scans.verdict_of(entry.path, entry.blake3.hex)),
    }
    # Not stored (a replica), or held by a scrub (never served): pull through from a peer.
    if not head and await run_in_threadpool(node.uploads.servable, entry.blake3) is None:
        streamed = await _pull_through(node.pullthrough, entry)
        if streamed is not None:
            return StreamingResponse(streamed, headers=headers)
        missing = BlobUnavailableError(
            f"The bytes of {path} are not on this node yet and no peer could serve them",
            detail={"commit": snap.commit.id, "path": path},
        )
        await run_in_threadpool(node.uploads.require_servable, entry.blake3, missing)
    return blob_response(
        node.blobs,
        entry.blake3,
        entry.size,
        headers,
        head=head,
        range_header=request.headers.get("range"),
    )


async def _pull_through(fetcher: PullThrough, entry: TreeEntry) -> Iterator[bytes] | None:
    """Stream from a peer while storing, or wait for the fetch already running (None)."""
    stream = fetcher.stream(entry.blake3, entry.size)
    if stream is None:
        await run_in_threadpool(fetcher.fetch_now, entry.blake3, entry.size)
        return None
    try:  # wait until a source answered before committing to a 200
        first = await run_in_threadpool(next, stream, None)
    except BlobUnavailableError:
        return None
    return iter(()) if first is None else itertools.chain([first], stream)


for _prefix, _kind in (("/datasets", "dataset"), ("", "model")):
    for _method in ("GET", "HEAD"):
        router.api_route(
            _prefix + "/{namespace}/{name}/resolve/{revision}/{path:path}",
            methods=[_method],
            response_class=Response,
            operation_id=f"resolve_{_kind}_file_{_method.lower()}",
            **bytes_route_docs(_method),
        )(_resolve)
