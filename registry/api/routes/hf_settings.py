"""Hub-compatible repo settings (private, gated) and the access requests of gated repos."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.deps import PrincipalDep, RepoSettingsDep
from registry.api.errors import documented
from registry.api.paths import parse_repo
from registry.domain.errors import InvalidError
from registry.domain.records import AccessRequestRecord
from registry.wire import (
    AccessRequestOut,
    AccessRequestUser,
    GrantAccessIn,
    HandleAccessRequestIn,
    RepoSettingsIn,
    iso_ms,
)

router = APIRouter(tags=["huggingface"])
REPO = "/api/{repo_type}/{namespace}/{name}"


def request_out(found: AccessRequestRecord) -> AccessRequestOut:
    return AccessRequestOut(
        requestId=found.user,  # one request per user and repo: the user names it
        status=found.status,
        timestamp=iso_ms(found.updated_ms),
        user=AccessRequestUser(user=found.user, fullname=found.user),
    )


@router.put(REPO + "/settings", responses=documented(400, 401, 403, 404, 409, 422))
def update_settings(
    repo_type: str,
    namespace: str,
    name: str,
    body: RepoSettingsIn,
    settings: RepoSettingsDep,
    principal: PrincipalDep,
) -> dict[str, object]:
    """`HfApi.update_repo_settings`: make a repo private or public, gate or ungate it."""
    found = settings.update(
        principal,
        parse_repo(repo_type, namespace, name),
        private=body.private,
        visibility=body.visibility,
        gated=body.gated,
    )
    return {"private": found.private, "gated": found.gated or False}


@router.post(
    REPO + "/ask-access", responses=documented(400, 401, 404), response_model=AccessRequestOut
)
def ask_access(
    repo_type: str,
    namespace: str,
    name: str,
    settings: RepoSettingsDep,
    principal: PrincipalDep,
) -> AccessRequestOut:
    """Ask to download a gated repo's files: accepted at once if its gate is "auto"."""
    return request_out(settings.ask(principal, parse_repo(repo_type, namespace, name)))


@router.get(
    REPO + "/user-access-request/{status}",
    responses=documented(400, 401, 403, 404),
    response_model=list[AccessRequestOut],
)
def list_access_requests(
    repo_type: str,
    namespace: str,
    name: str,
    status: str,
    settings: RepoSettingsDep,
    principal: PrincipalDep,
) -> list[AccessRequestOut]:
    """`HfApi.list_{pending,accepted,rejected}_access_requests` (for the repo's writers)."""
    repo = parse_repo(repo_type, namespace, name)
    return [request_out(r) for r in settings.requests(principal, repo, status)]


@router.post(
    REPO + "/user-access-request/handle",
    responses=documented(400, 401, 403, 404),
    response_model=AccessRequestOut,
)
def handle_access_request(
    repo_type: str,
    namespace: str,
    name: str,
    body: HandleAccessRequestIn,
    settings: RepoSettingsDep,
    principal: PrincipalDep,
) -> AccessRequestOut:
    """`HfApi.{accept,reject,cancel}_access_request` (cancel sets it back to pending)."""
    user = body.user or body.requestId
    if not user:
        raise InvalidError("Name the request by user or requestId")
    repo = parse_repo(repo_type, namespace, name)
    return request_out(settings.handle(principal, repo, user, body.status))


@router.post(
    REPO + "/user-access-request/grant",
    responses=documented(400, 401, 403, 404),
    response_model=AccessRequestOut,
)
def grant_access(
    repo_type: str,
    namespace: str,
    name: str,
    body: GrantAccessIn,
    settings: RepoSettingsDep,
    principal: PrincipalDep,
) -> AccessRequestOut:
    """`HfApi.grant_access`: accept a user without a request of theirs."""
    repo = parse_repo(repo_type, namespace, name)
    return request_out(settings.grant(principal, repo, body.user))
