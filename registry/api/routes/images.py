""" "Made with" routes under /v1: a repo's images with their generation data and resolved
resources, and the images that used a file."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from registry.api.deps import MadeWithDep, PrincipalDep
from registry.api.errors import documented
from registry.api.paths import parse_repo
from registry.wire import ImageOut, UsedByOut

router = APIRouter(prefix="/v1", tags=["native"])


@router.get(
    "/repos/{repo_type}/{namespace}/{name}/images",
    responses=documented(401, 404),
    response_model=list[ImageOut],
)
def repo_images(
    repo_type: str,
    namespace: str,
    name: str,
    madewith: MadeWithDep,
    principal: PrincipalDep,
    revision: str = "main",
) -> list[ImageOut]:
    """The images of a revision (PNG, JPEG, WebP): state (pending until the node read them,
    read, none, refused), generation data, and each resource with the files it resolves to."""
    repo = parse_repo(f"{repo_type}s", namespace, name)
    images = madewith.repo_images(principal, repo, revision)
    return [ImageOut.model_validate(asdict(image)) for image in images]


@router.get(
    "/files/by-hash/{file_hash}/used-by",
    responses=documented(400, 401),
    response_model=list[UsedByOut],
)
def used_by(file_hash: str, madewith: MadeWithDep, principal: PrincipalDep) -> list[UsedByOut]:
    """The images on the node whose generation data names the file with this hash (any form
    `/v1/files/by-hash/{file_hash}` takes), by a hash written for it or by its file name."""
    return [UsedByOut.model_validate(asdict(hit)) for hit in madewith.used_by(principal, file_hash)]
