"""HuggingFace-compatible account and repo routes: whoami, create/delete, info, listing."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from registry.api.deps import PrincipalDep, RepoInfoDep, ReposDep, SearchDep, SettingsDep
from registry.api.errors import documented, error_response, registry_error_response
from registry.api.files import replica_headers
from registry.api.paths import api_repo_path, parse_repo, public_base
from registry.domain.errors import RepoExistsError, RepoNotFoundError, UnauthorizedError
from registry.domain.names import RepoId, RepoType
from registry.domain.search import SearchDoc, SearchQuery
from registry.wire import (
    AccessToken,
    AuthOut,
    CreateRepoIn,
    DeleteRepoIn,
    MoveRepoIn,
    OrgOut,
    RepoInfo,
    RepoUrl,
    ValidateYamlIn,
    ValidateYamlOut,
    WhoAmI,
    iso_ms,
)

router = APIRouter(tags=["huggingface"])


@router.get("/api/whoami-v2", responses=documented(401), response_model=WhoAmI)
def whoami(principal: PrincipalDep) -> WhoAmI:
    if principal.user is None:
        raise UnauthorizedError("Invalid credentials in Authorization header")
    role = "write" if principal.can_write else "read"
    orgs = [OrgOut(name=m.org, fullname=m.org, roleInOrg=m.role) for m in principal.orgs]
    return WhoAmI(
        name=principal.user,
        fullname=principal.user,
        isAdmin=principal.is_admin,
        orgs=orgs,
        auth=AuthOut(
            accessToken=AccessToken(displayName=principal.token_label or "token", role=role)
        ),
    )


def repo_url(request: Request, settings: SettingsDep, repo: RepoId) -> RepoUrl:
    base = public_base(request, settings.public_url)
    return RepoUrl(
        url=f"{base}/{repo.type.url_prefix}{repo.full_name}", name=repo.full_name, id=repo.full_name
    )


@router.post("/api/repos/create", responses=documented(400, 401, 403, 409), response_model=RepoUrl)
def create_repo(
    body: CreateRepoIn,
    request: Request,
    repos: ReposDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    namespace = body.organization or principal.user
    if namespace is None:
        raise UnauthorizedError("Creating a repo needs a token")
    repo = RepoId.parse(RepoType.parse(body.type), namespace, body.name)
    private = body.visibility == "private" if body.visibility else bool(body.private)
    url = repo_url(request, settings, repo)
    try:
        repos.create(principal, repo, private=private)
    except RepoExistsError as exc:
        return registry_error_response(exc, extra=url.model_dump())
    return JSONResponse(url.model_dump())


@router.delete("/api/repos/delete", responses=documented(400, 401, 403, 404, 409), status_code=200)
def delete_repo(body: DeleteRepoIn, repos: ReposDep, principal: PrincipalDep) -> dict[str, str]:
    namespace = body.organization or principal.user
    if namespace is None:
        raise RepoNotFoundError()
    repo = parse_repo(RepoType.parse(body.type).plural, namespace, body.name)
    repos.delete(principal, repo)
    return {"deleted": repo.full_name}


def _split(repo_id: str) -> tuple[str, str]:
    namespace, _, name = repo_id.partition("/")
    return namespace, name


@router.post(
    "/api/repos/move", responses=documented(400, 401, 403, 404, 409), response_model=RepoUrl
)
def move_repo(
    body: MoveRepoIn,
    request: Request,
    repos: ReposDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> RepoUrl:
    """`HfApi.move_repo`: rename a repo or transfer it to another namespace; the old id then
    redirects to it."""
    repo_type = RepoType.parse(body.type)
    source = parse_repo(repo_type.plural, *_split(body.fromRepo))
    target = RepoId.parse(repo_type, *_split(body.toRepo))
    moved = repos.move(principal, source, target)
    return repo_url(request, settings, moved.repo)


async def info_response(
    repoinfo: RepoInfoDep, principal: PrincipalDep, repo: RepoId, revision: str, blobs: bool
) -> Response:
    answer = await repoinfo.info(principal, repo, revision, blobs)
    headers = replica_headers(answer.replica)
    return Response(answer.body, media_type="application/json", headers=headers)


@router.get(
    "/api/{repo_type}/{namespace}/{name}",
    responses=documented(401, 404),
    response_model=RepoInfo,
    response_model_exclude_none=True,
)
async def get_repo_info(
    repo_type: str,
    namespace: str,
    name: str,
    repoinfo: RepoInfoDep,
    principal: PrincipalDep,
    blobs: bool = False,
) -> Response:
    repo = parse_repo(repo_type, namespace, name)
    return await info_response(repoinfo, principal, repo, "main", blobs)


@router.get(
    "/api/{repo_type}/{namespace}/{name}/revision/{revision:path}",
    responses=documented(400, 401, 404),
    response_model=RepoInfo,
    response_model_exclude_none=True,
)
async def get_repo_info_at(
    request: Request, repoinfo: RepoInfoDep, principal: PrincipalDep, blobs: bool = False
) -> Response:
    target = api_repo_path(request)
    return await info_response(repoinfo, principal, target.repo, "/".join(target.rest), blobs)


@router.get("/api/{repo_type}/{namespace}/{name}/auth-check", responses=documented(401, 403, 404))
def auth_check(
    repo_type: str, namespace: str, name: str, repos: ReposDep, principal: PrincipalDep
) -> dict[str, bool]:
    """`HfApi.auth_check`: 200 when the caller may read the repo, 404 RepoNotFound if not."""
    repos.check_access(principal, parse_repo(repo_type, namespace, name), write=False)
    return {"access": True}


@router.get(
    "/api/{repo_type}/{namespace}/{name}/auth-check/write", responses=documented(401, 403, 404)
)
def auth_check_write(
    repo_type: str, namespace: str, name: str, repos: ReposDep, principal: PrincipalDep
) -> dict[str, bool]:
    """`HfApi.auth_check(write=True)`: 200 when the caller may write to the repo."""
    repos.check_access(principal, parse_repo(repo_type, namespace, name), write=True)
    return {"access": True}


def list_item(doc: SearchDoc, scan: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {
        "id": f"{doc.namespace}/{doc.name}" if doc.namespace else doc.name,
        "author": doc.namespace,
        "private": doc.private,
        "lastModified": iso_ms(doc.updated_ms),
        "createdAt": iso_ms(doc.created_ms),
        "tags": list(doc.tags),
        "downloads": doc.downloads,
        "likes": 0,
        "gated": doc.gated or False,
        "disabled": False,
        "home": doc.home,  # modelyard: the node it is homed on (the Hub client ignores it)
    }
    if doc.repo_type == RepoType.MODEL.value:
        item["modelId"] = item["id"]
    if scan is not None:
        item["scan"] = scan
    return item


HF_SORTS = {"downloads": "downloads", "createdAt": "created", "created_at": "created"}


@router.get(
    "/api/{repo_type}", responses=documented(401, 404), response_model=list[dict[str, object]]
)
def list_repos(
    repo_type: str,
    request: Request,
    search_service: SearchDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    search: str | None = None,
    author: str | None = None,
    filter: Annotated[list[str] | None, Query()] = None,
    sort: str | None = None,
    limit: int | None = Query(default=None, ge=1),
    offset: int = Query(default=0, ge=0),
) -> Response:
    """The Hub's listing, answered by the same search as /v1/search (complete even while the
    index lags; `X-Modelyard-Index-Behind` says by how many change-log entries)."""
    kind = RepoType.from_plural(repo_type)
    if kind is None:
        return error_response(404, "NotFound", f"Unknown listing {repo_type!r}")
    page = min(limit or settings.limits.max_page_size, settings.limits.max_page_size)
    query = SearchQuery(
        repo_type=kind.value,
        text=search or "",
        tags=tuple(filter or ()),
        author=author,
        sort=HF_SORTS.get(sort or "", "recent"),
        offset=offset,
        limit=page,
    )
    found = search_service.search(principal, query)
    headers = {
        "X-Modelyard-Index-Behind": str(found.lag.behind_entries),
        "X-Modelyard-Index-Pending": str(found.lag.pending_repos),
    }
    if found.more and (limit is None or limit > page):
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
        query_string = urlencode([*params, ("offset", str(offset + page))])
        next_url = str(request.url.replace(query=query_string))
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse([list_item(h.doc, h.scan) for h in found.hits], headers=headers)


@router.post("/api/validate-yaml", response_model=ValidateYamlOut)
def validate_yaml(body: ValidateYamlIn) -> ValidateYamlOut:  # noqa: ARG001 - accepted as is
    return ValidateYamlOut()
