"""HuggingFace-compatible write routes: preupload, Git-LFS batch/PUT/verify, NDJSON commit."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from registry.api.deps import NodeDep, PrincipalDep
from registry.api.errors import documented
from registry.api.ingest import BYTES_BODY, receive_body
from registry.api.limits import check_commit, check_file_sizes
from registry.api.paths import api_repo_path, parse_repo, public_base, raw_segments
from registry.domain.digest import is_sha256
from registry.domain.errors import (
    InvalidError,
    MissingObjectError,
    UnauthorizedError,
)
from registry.domain.names import RepoId, check_repo_path
from registry.domain.tokens import sign, verify_signature
from registry.service.commits import AddBytes, AddLfs, Delete, Operation, PreuploadFile
from registry.service.uploads import LfsObject
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
LFS_URL_TTL = 24 * 3600
# The commit body (NDJSON): one JSON object per line, a header and file operations.
_PATH = {"type": "string", "minLength": 1}


def _line(key: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["key", "value"],
        "properties": {"key": key, "value": {"type": "object", **value}},
    }


NDJSON = {
    "schema": {
        "type": "array",
        "description": "One JSON object per line: a header and the file operations",
        "minItems": 1,
        "items": {
            "oneOf": [
                _line(
                    {"const": "header"},
                    {
                        "required": ["summary"],
                        "properties": {
                            "summary": {"type": "string", "minLength": 1},
                            "description": {"type": "string"},
                            "parentCommit": {"type": "string"},
                        },
                    },
                ),
                _line(
                    {"const": "file"},
                    {
                        "required": ["path", "content"],
                        "properties": {
                            "path": _PATH,
                            "content": {"type": "string", "pattern": "^([A-Za-z0-9+/]{4})*$"},
                            "encoding": {"const": "base64"},
                        },
                    },
                ),
                _line(
                    {"const": "lfsFile"},
                    {
                        "required": ["path", "oid"],
                        "properties": {
                            "path": _PATH,
                            "algo": {"const": "sha256"},
                            "oid": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "size": {"type": "integer", "minimum": 0},
                        },
                    },
                ),
                _line(
                    {"enum": ["deletedFile", "deletedFolder"]},
                    {"required": ["path"], "properties": {"path": _PATH}},
                ),
            ]
        },
    }
}


@router.post(
    "/api/{repo_type}/{namespace}/{name}/preupload/{revision:path}",
    responses=documented(400, 401, 403, 404),
    response_model=PreuploadOut,
)
def preupload(
    request: Request, body: PreuploadIn, node: NodeDep, principal: PrincipalDep
) -> PreuploadOut:
    target = api_repo_path(request)
    files = [PreuploadFile(check_repo_path(f.path), f.size) for f in body.files]
    check_file_sizes(node.settings.limits, ((f.path, f.size) for f in files))
    answers = node.commits.preupload(
        principal, target.repo, "/".join(target.rest), files, body.gitIgnore
    )
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
    request: Request, body: LfsBatchIn, node: NodeDep, principal: PrincipalDep
) -> LfsBatchOut:
    if body.operation != "upload":
        raise InvalidError("Only the upload operation is supported; download via /resolve")
    check_file_sizes(node.settings.limits, ((f"LFS object {o.oid}", o.size) for o in body.objects))
    answers = node.uploads.lfs_batch(
        principal, _batch_repo(request), [LfsObject(o.oid, o.size) for o in body.objects]
    )
    base = public_base(request, node.settings.public_url)
    expires = str(int(time.time()) + LFS_URL_TTL)
    objects = []
    for a in answers:
        out = LfsObjectOut(oid=a.oid, size=a.size)
        if a.error:
            out.error = LfsError(code=422, message=a.error)
        elif a.upload:
            sig = sign(node.identity.secret, a.oid, str(a.size), expires)
            query = f"size={a.size}&expires={expires}&sig={sig}"
            out.actions = {
                "upload": LfsAction(
                    href=f"{base}/lfs/objects/{a.oid}?{query}", expires_in=LFS_URL_TTL
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
        responses=documented(400, 401, 403, 404, 409),
        operation_id=f"lfs_batch_{_kind}",
    )(_lfs_batch)


@router.put(
    "/lfs/objects/{oid}", responses=documented(400, 401), status_code=200, openapi_extra=BYTES_BODY
)
async def lfs_upload(
    oid: str, size: int, expires: str, sig: str, request: Request, node: NodeDep
) -> dict[str, object]:
    """Receive an LFS object; authorised by the signature in the URL (clients send no auth)."""
    if (
        not verify_signature(node.identity.secret, sig, oid, str(size), expires)
        or int(expires) < time.time()
    ):
        raise UnauthorizedError(
            "Upload URL signature is invalid or expired; ask the batch endpoint for a new one"
        )
    if await run_in_threadpool(node.uploads.reuse_sha256, oid, size):
        return {"oid": oid, "size": size, "stored": False}
    writer = node.uploads.writer(size)
    await receive_body(request, writer, size)
    await run_in_threadpool(node.uploads.complete, writer, Expected(sha256=oid, size=size))
    return {"oid": oid, "size": size, "stored": True}


@router.post("/lfs/verify/{oid}", responses=documented(400))
def lfs_verify(oid: str, body: LfsVerifyIn, node: NodeDep) -> dict[str, object]:
    if body.oid != oid or not node.uploads.has_sha256(oid, body.size):
        raise MissingObjectError(f"LFS object {oid} of {body.size} bytes is not stored")
    return {"oid": oid, "size": body.size}


def parse_ndjson(body: bytes) -> tuple[dict[str, object], list[Operation]]:
    """Parse a Hub commit payload: one header line, then file operations."""
    header: dict[str, object] | None = None
    operations: list[Operation] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            assert isinstance(value, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise InvalidError(
                f'Malformed NDJSON at line {number}: expected {{"key": ..., "value": {{...}}}}'
            ) from None
        if key == "header":
            header = value
        else:
            operations.append(_operation(key, value, number))
    if header is None:
        raise InvalidError("The commit payload has no header line")
    summary = header.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidError("The commit message (summary) must be a non-empty string")
    return header, operations


def _operation(key: str, value: dict[str, object], number: int) -> Operation:
    path = value.get("path")
    if not isinstance(path, str):
        raise InvalidError(f"Line {number}: 'path' must be a string")
    if key in ("deletedFile", "deletedFolder"):
        check_repo_path(path.rstrip("/"))
        return Delete(path, folder=key == "deletedFolder" or path.endswith("/"))
    check_repo_path(path)
    if key == "file":
        try:
            data = base64.b64decode(str(value.get("content", "")), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidError(f"Line {number}: content of {path!r} is not base64") from None
        return AddBytes(path, data)
    if key == "lfsFile":
        oid, size = value.get("oid"), value.get("size")
        if (
            not isinstance(oid, str)
            or not is_sha256(oid)
            or not (size is None or (isinstance(size, int) and size >= 0))
        ):
            raise InvalidError(f"Line {number}: lfsFile needs a sha256 oid and a size")
        return AddLfs(path, oid, size)
    raise InvalidError(f"Line {number}: unknown operation {key!r}")


@router.post(
    "/api/{repo_type}/{namespace}/{name}/commit/{revision:path}",
    responses=documented(400, 401, 403, 404, 409, 412),
    response_model=CommitOut,
    response_model_exclude_none=True,
    openapi_extra={"requestBody": {"required": True, "content": {"application/x-ndjson": NDJSON}}},
)
async def commit(
    request: Request, node: NodeDep, principal: PrincipalDep, create_pr: bool = False
) -> Response:
    target = api_repo_path(request)
    body = await request.body()

    def run() -> CommitOut:
        header, operations = parse_ndjson(body)
        check_commit(node.settings.limits, operations)
        parent = header.get("parentCommit")
        result = node.commits.commit(
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
            f"{public_base(request, node.settings.public_url)}/"
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
