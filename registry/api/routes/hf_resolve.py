"""`/resolve/`: file downloads exactly as the Hub serves them (HEAD contract, Range, ETags).

The route is `async`: a HEAD for a commit seen before is answered from the read cache on the
event loop; anything else is looked up on the threadpool (`registry.service.files`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from registry.api.deps import FilesDep, PrincipalDep, SettingsDep
from registry.api.files import blob_response, bytes_route_docs, file_headers
from registry.api.paths import parse_repo, public_base, raw_segments

router = APIRouter(tags=["huggingface"])


async def _resolve(
    request: Request, files: FilesDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    parts = raw_segments(request)
    plural = "datasets" if parts[0] == "datasets" and parts[3] == "resolve" else "models"
    if plural == "datasets":
        parts = parts[1:]
    repo = parse_repo(plural, parts[0], parts[1])
    head = request.method == "HEAD"  # answered from metadata: the bytes may follow
    download = not head and request.headers.get("range", "bytes=0-").startswith("bytes=0-")
    file = await files.resolve(principal, repo, parts[3], "/".join(parts[4:]), download=download)
    headers = file_headers(file, public_base(request, settings.public_url))
    if head:
        return Response(status_code=200, headers=headers)
    source = await files.source(file)
    return blob_response(source, headers, range_header=request.headers.get("range"))


for _prefix, _kind in (("/datasets", "dataset"), ("", "model")):
    for _method in ("GET", "HEAD"):
        router.api_route(
            _prefix + "/{namespace}/{name}/resolve/{revision}/{path:path}",
            methods=[_method],
            response_class=Response,
            operation_id=f"resolve_{_kind}_file_{_method.lower()}",
            **bytes_route_docs(_method),
        )(_resolve)
