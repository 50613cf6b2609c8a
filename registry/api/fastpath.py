"""An ASGI layer that answers cache hits of the two hottest reads without the router.

`GET /api/{models|datasets}/{ns}/{name}[/revision/{rev}]` and `HEAD .../resolve/{rev}/{path}`
are what clients send most (every `hf_hub_download` starts with the HEAD). When the read cache
already holds the repo, the revision and the commit, this layer replies directly: FastAPI's
routing and dependency solving cost about four times the work of the answer itself. Anything
else, a cache miss, or any error (private repo, bad token) goes to the app unchanged, so every
response is still produced by, or identical to, the regular routes.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.deps import bearer_token, services_of
from registry.api.files import file_headers
from registry.domain.access import Principal
from registry.domain.errors import RegistryError
from registry.domain.names import NO_NAMESPACE, RepoId, RepoType
from registry.metrics import ROUTE_KEY
from registry.service.services import Services


class ReadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = None
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            try:
                answer = await _answer(scope)
            except (RegistryError, ValueError, IndexError):
                answer = None  # let the regular route produce the error response
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = answer
        scope[ROUTE_KEY] = "fastpath"
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def _answer(scope: Scope) -> Answer | None:
    services = services_of(scope)
    if services is None:
        return None
    parts = [unquote(p, errors="strict") for p in scope["raw_path"].decode("latin-1").split("/")]
    principal = services.auth.cached(bearer_token(scope))
    if principal is None:
        return None
    if scope["method"] == "GET" and len(parts) in (5, 7) and parts[1] == "api":
        return await _info(services, principal, parts, scope["query_string"])
    if scope["method"] == "HEAD":
        return await _resolve_head(services, principal, parts)
    return None


async def _info(
    services: Services, principal: Principal, parts: list[str], query: bytes
) -> Answer | None:
    # ['', 'api', 'models', ns, name] or [..., 'revision', rev]
    repo_type = RepoType.from_plural(parts[2])
    if repo_type is None or (len(parts) == 7 and parts[5] != "revision"):
        return None
    if query not in (b"", b"blobs=true", b"blobs=false"):
        return None
    revision = parts[6] if len(parts) == 7 else "main"
    repo = _repo(repo_type, parts[3], parts[4])
    body = await services.repoinfo.cached(principal, repo, revision, query == b"blobs=true")
    if body is None:
        return None
    return (
        200,
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        body,
    )


def _repo(repo_type: RepoType, namespace: str, name: str) -> RepoId:
    """The id the cache knows the repo by (`~/gpt2` is `gpt2`: registry.api.canonical); an id
    that is not valid is never in the cache, so it need not be checked here, but for the empty
    namespace (the route refuses `/api/models//gpt2`; the cache holds `gpt2` with it)."""
    if not namespace:
        raise ValueError("empty namespace")  # the regular route answers
    return RepoId(repo_type, "" if namespace == NO_NAMESPACE else namespace, name)


async def _resolve_head(
    services: Services, principal: Principal, parts: list[str]
) -> Answer | None:
    # ['', [datasets,] ns, name, 'resolve', rev, *path]
    repo_type = (
        RepoType.DATASET if parts[1] == "datasets" and parts[4] == "resolve" else RepoType.MODEL
    )
    offset = 2 if repo_type is RepoType.DATASET else 1
    if len(parts) < offset + 5 or parts[offset + 2] != "resolve":
        return None
    repo = _repo(repo_type, parts[offset], parts[offset + 1])
    path = "/".join(parts[offset + 4 :])
    file = await services.files.cached_head(principal, repo, parts[offset + 3], path)
    if file is None:
        return None
    headers = file_headers(file, base="")  # no Xet headers here: cached_head leaves those out
    return 200, [(k.lower().encode(), v.encode()) for k, v in headers.items()], b""
