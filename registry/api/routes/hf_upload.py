"""HuggingFace-compatible write routes: preupload, Git-LFS batch/PUT/verify, NDJSON commit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from registry.api.deps import CommitsDep, PrincipalDep, SettingsDep, UploadsDep
from registry.api.errors import documented
from registry.api.ingest import BYTES_BODY, receive_body
from registry.api.limits import check_commit, check_file_sizes
from registry.api.ndjson import NDJSON, parse_ndjson
from registry.api.paths import api_repo_path, parse_repo, public_base, raw_segments
from registry.domain.errors import InvalidError, MissingObjectError
from registry.domain.names import RepoId, check_repo_path
from registry.service.commits import PreuploadFile
from registry.service.uploads import LFS_GRANT_SECONDS, LfsObject
from registry.storage import Expected
from registry.wire import (
    CommitOut,
    LfsAction,
    LfsBatchIn,
    LfsBatchOut,
    LfsError,
    LfsObjectOut,
    LfsVerifyIn,
    PreuploadFileOut,
    PreuploadIn,
    PreuploadOut,
)

router = APIRouter(tags=["huggingface"])


@router.post(
    "/api/{repo_type}/{namespace}/{name}/preupload/{revision:path}",
    responses=documented(400, 401, 403, 404, 507),
    response_model=PreuploadOut,
)
def preupload(
    request: Request,
    body: PreuploadIn,
    commits: CommitsDep,
    uploads: UploadsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    create_pr: bool = False,
) -> PreuploadOut:
    target = api_repo_path(request)
    files = [PreuploadFile(check_repo_path(f.path), f.size) for f in body.files]
    check_file_sizes(settings.limits, ((f.path, f.size) for f in files))
    answers = commits.preupload(
        principal, target.repo, "/".join(target.rest), files, body.gitIgnore, create_pr
    )
    # The one call every upload makes first (LFS and Xet alike): a commit whose large files
    # cannot fit is refused here (507, which the Hub client does not retry), before any byte.
    sizes = {f.path: f.size for f in files}
    uploads.require_room(sum(sizes[a.path] for a in answers if a.lfs and not a.ignored))
    return PreuploadOut(
        files=[
            PreuploadFileOut(
                path=a.path,
                uploadMode="lfs" if a.lfs else "regular",
                shouldIgnore=a.ignored,
                oid=a.oid,
            )
            for a in answers
        ]
    )


def _batch_repo(request: Request) -> RepoId:
    parts = raw_segments(request)  # [datasets/] ns / name.git / info/lfs/objects/batch
    plural = "datasets" if len(parts) == 7 else "models"
    namespace, name = parts[-6], parts[-5]
    return parse_repo(plural, namespace, name.removesuffix(".git"))


def _lfs_batch(
    request: Request,
    body: LfsBatchIn,
    uploads: UploadsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> LfsBatchOut:
    if body.operation != "upload":
        raise InvalidError("Only the upload operation is supported; download via /resolve")
    check_file_sizes(settings.limits, ((f"LFS object {o.oid}", o.size) for o in body.objects))
    answers = uploads.lfs_batch(
        principal,
        _batch_repo(request),
        [LfsObject(o.oid, o.size) for o in body.objects],
        for_pr=body.ref is None,
    )
    base = public_base(request, settings.public_url)
    objects = []
    for a in answers:
        out = LfsObjectOut(oid=a.oid, size=a.size)
        if a.error:
            out.error = LfsError(code=422, message=a.error)
        elif a.grant:
            out.actions = {
                "upload": LfsAction(
                    href=f"{base}/lfs/objects/{a.oid}?{a.grant}", expires_in=LFS_GRANT_SECONDS
                ),
                "verify": LfsAction(href=f"{base}/lfs/verify/{a.oid}"),
            }
        objects.append(out)
    return LfsBatchOut(objects=objects)


for _prefix, _kind in (("", "model"), ("/datasets", "dataset")):
    router.post(
        _prefix + "/{namespace}/{name_git}/info/lfs/objects/batch",
        response_model=LfsBatchOut,
        response_model_exclude_none=True,
        responses=documented(400, 401, 403, 404, 409, 507),
        operation_id=f"lfs_batch_{_kind}",
    )(_lfs_batch)


@router.put(
    "/lfs/objects/{oid}",
    responses=documented(400, 401, 507),
    status_code=200,
    openapi_extra=BYTES_BODY,
)
async def lfs_upload(
    oid: str, size: int, expires: str, sig: str, request: Request, uploads: UploadsDep
) -> dict[str, object]:
    """Receive an LFS object; authorised by the signature in the URL (clients send no auth)."""
    if not await run_in_threadpool(uploads.lfs_upload_wanted, oid, size, expires, sig):
        return {"oid": oid, "size": size, "stored": False}
    writer = uploads.writer(size)
    await receive_body(request, writer, size)
    await run_in_threadpool(uploads.complete, writer, Expected(sha256=oid, size=size))
    return {"oid": oid, "size": size, "stored": True}


@router.post("/lfs/verify/{oid}", responses=documented(400))
def lfs_verify(oid: str, body: LfsVerifyIn, uploads: UploadsDep) -> dict[str, object]:
    if body.oid != oid or not uploads.has_sha256(oid, body.size):
        raise MissingObjectError(f"LFS object {oid} of {body.size} bytes is not stored")
    return {"oid": oid, "size": body.size}


@router.post(
    "/api/{repo_type}/{namespace}/{name}/commit/{revision:path}",
    responses=documented(400, 401, 403, 404, 409, 412),
    response_model=CommitOut,
    response_model_exclude_none=True,
    openapi_extra={"requestBody": {"required": True, "content": {"application/x-ndjson": NDJSON}}},
)
async def commit(
    request: Request,
    commits: CommitsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    create_pr: bool = False,
) -> Response:
    target = api_repo_path(request)
    body = await request.body()

    def run() -> CommitOut:
        header, operations = parse_ndjson(body)
        check_commit(settings.limits, operations)
        parent = header.get("parentCommit")
        result = commits.commit(
            principal,
            target.repo,
            "/".join(target.rest),
            title=str(header["summary"]),
            message=str(header.get("description") or ""),
            operations=operations,
            parent_commit=str(parent) if parent else None,
            create_pr=create_pr,
        )
        base = (
            f"{public_base(request, settings.public_url)}/"
            f"{target.repo.type.url_prefix}{target.repo.full_name}"
        )
        pr_url = f"{base}/discussions/{result.pr_number}" if result.pr_number else None
        return CommitOut(
            commitOid=result.sha,
            commitUrl=f"{base}/commit/{result.sha}",
            commitMessage=str(header["summary"]),
            pullRequestUrl=pr_url,
        )

    out = await run_in_threadpool(run)
    return JSONResponse(out.model_dump(exclude_none=True))
