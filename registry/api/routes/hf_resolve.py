"""`/resolve/`: file downloads exactly as the Hub serves them (HEAD contract, Range, ETags)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from registry.api.deps import NodeDep, PrincipalDep
from registry.api.files import blob_response
from registry.api.paths import parse_repo, raw_segments
from registry.domain.errors import EntryNotFoundError

router = APIRouter(tags=["huggingface"])
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}}}, 206: {}}


def _resolve(request: Request, node: NodeDep, principal: PrincipalDep) -> Response:
    parts = raw_segments(request)
    plural = "datasets" if parts[0] == "datasets" and parts[3] == "resolve" else "models"
    if plural == "datasets":
        parts = parts[1:]
    repo = parse_repo(plural, parts[0], parts[1])
    revision, path = parts[3], "/".join(parts[4:])
    snap = node.reads.snapshot(principal, repo, revision)
    entry = node.reads.file(snap, path)
    if node.blobs.stat(entry.blake3) is None:
        raise EntryNotFoundError(f"The bytes of {path} are not on this node yet",
                                 detail={"commit": snap.commit.id, "path": path})
    headers = {"X-Repo-Commit": snap.commit.id, "ETag": f'"{entry.etag}"',
               "X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)}
    return blob_response(node.blobs, entry.blake3, entry.size, headers,
                         head=request.method == "HEAD")


for _prefix, _kind in (("/datasets", "dataset"), ("", "model")):
    for _method in ("GET", "HEAD"):
        router.api_route(_prefix + "/{namespace}/{name}/resolve/{rest:path}", methods=[_method],
                         response_class=Response, responses=_RESPONSES,
                         operation_id=f"resolve_{_kind}_file_{_method.lower()}")(_resolve)
