"""HuggingFace-compatible history rewrites: super-squash of a branch, listing and permanently
deleting a repo's LFS files."""

from __future__ import annotations

from fastapi import APIRouter, Request

from registry.api.deps import PrincipalDep, RewriteDep
from registry.api.errors import documented
from registry.api.paths import api_repo_path, parse_repo
from registry.wire import LfsDeleteIn, LfsDeleteOut, LfsFileOut, SquashIn, SquashOut, iso_ms

router = APIRouter(tags=["huggingface"])
PREFIX = "/api/{repo_type}/{namespace}/{name}"


@router.post(
    PREFIX + "/super-squash/{branch:path}",
    responses=documented(400, 401, 403, 404, 409),
    response_model=SquashOut,
)
def super_squash(
    request: Request, rewrite: RewriteDep, principal: PrincipalDep, body: SquashIn | None = None
) -> SquashOut:
    """Make the branch one commit, with no parent, holding its head's files."""
    target = api_repo_path(request)
    branch = "/".join(target.rest)
    message = (body.message if body else None) or f"Super-squash branch '{branch}'"
    return SquashOut(commitId=rewrite.squash(principal, target.repo, branch, message))


@router.get(
    PREFIX + "/lfs-files", responses=documented(401, 403, 404), response_model=list[LfsFileOut]
)
def list_lfs_files(
    repo_type: str, namespace: str, name: str, rewrite: RewriteDep, principal: PrincipalDep
) -> list[LfsFileOut]:
    """Every LFS file a commit of the repo names (one page: the whole list)."""
    repo = parse_repo(repo_type, namespace, name)
    return [
        LfsFileOut(
            fileOid=f.sha256,
            oid=f.sha256,
            size=f.size,
            filename=f.path,
            pushedAt=iso_ms(f.first_ms),
        )
        for f in rewrite.lfs_files(principal, repo)
    ]


@router.post(
    PREFIX + "/lfs-files/batch",
    responses=documented(400, 401, 403, 404, 409),
    response_model=LfsDeleteOut,
)
def delete_lfs_files(
    repo_type: str,
    namespace: str,
    name: str,
    body: LfsDeleteIn,
    rewrite: RewriteDep,
    principal: PrincipalDep,
) -> LfsDeleteOut:
    """Permanently delete LFS files: taken out of every commit of the repo, bytes freed by gc."""
    repo = parse_repo(repo_type, namespace, name)
    return LfsDeleteOut(deleted=rewrite.delete_lfs_files(principal, repo, body.deletions.sha))
