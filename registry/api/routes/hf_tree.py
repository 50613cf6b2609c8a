"""HuggingFace-compatible browsing routes: tree, paths-info, refs, commits, branches, tags."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse

from registry.api.deps import CommitsDep, PrincipalDep, ReadsDep, SettingsDep, XetDep
from registry.api.errors import documented
from registry.api.paths import api_repo_path
from registry.domain.commit import tree_oid
from registry.domain.errors import InvalidRevisionError
from registry.domain.records import RefRecord
from registry.service.reads import Listed
from registry.wire import (
    BranchIn,
    CommitAuthor,
    CommitItem,
    FormattedCommit,
    LastCommit,
    LfsInfo,
    RefItem,
    RefsOut,
    TagIn,
    TreeItem,
    iso_ms,
)

router = APIRouter(tags=["huggingface"])
PREFIX = "/api/{repo_type}/{namespace}/{name}"
COMMITS_PAGE = 100


def tree_items(
    reads: ReadsDep, xet: XetDep, items: list[Listed], *, expand: bool
) -> list[dict[str, object]]:
    commits = reads.commit_titles({i.last_commit for i in items if i.last_commit}) if expand else {}
    xet_hashes = xet.xet_hashes({i.entry.blake3 for i in items if i.entry and i.entry.lfs})
    out = []
    for item in items:
        e = item.entry
        if e is None:
            tree_item = TreeItem(
                type="directory", oid=tree_oid([item.path]), size=0, path=item.path
            )
        else:
            tree_item = TreeItem(type="file", oid=e.oid, size=e.size, path=item.path)
        if e is not None and e.lfs:
            tree_item.lfs = LfsInfo(oid=e.sha256, size=e.size, pointerSize=len(e.pointer))
            xet_hash = xet_hashes.get(e.blake3)
            tree_item.xetHash = xet_hash.hex if xet_hash is not None else None
        last = commits.get(item.last_commit or "")
        if last is not None:
            tree_item.lastCommit = LastCommit(
                id=last.id, title=last.title, date=iso_ms(last.created_ms)
            )
        out.append(tree_item)
    return [i.model_dump(exclude_none=True) for i in out]


def paginated(
    request: Request, items: list[dict[str, object]], page_size: int, cursor: int
) -> Response:
    page = items[cursor : cursor + page_size]
    headers = {}
    if cursor + page_size < len(items):
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        url = request.url.replace(query=urlencode(params + [("cursor", cursor + page_size)]))
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(page, headers=headers)


@router.get(
    PREFIX + "/tree/{rest:path}", responses=documented(400, 401, 404), response_model=list[TreeItem]
)
def list_tree(
    request: Request,
    reads: ReadsDep,
    xet: XetDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    recursive: bool = False,
    expand: bool = False,
    cursor: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    target = api_repo_path(request)
    folder = "/".join(target.rest[1:]).strip("/")
    items = reads.listing(
        principal, target.repo, target.rest[0], folder, recursive=recursive, expand=expand
    )
    page_size = 50 if expand else settings.limits.max_page_size
    return paginated(request, tree_items(reads, xet, items, expand=expand), page_size, cursor)


@router.post(
    PREFIX + "/paths-info/{revision:path}",
    responses=documented(400, 401, 404),
    response_model=list[TreeItem],
)
def paths_info(
    request: Request,
    reads: ReadsDep,
    xet: XetDep,
    principal: PrincipalDep,
    paths: Annotated[list[str], Form(max_length=1000)],
    expand: Annotated[bool, Form()] = False,
) -> Response:
    target = api_repo_path(request)
    found = reads.paths_info(principal, target.repo, "/".join(target.rest), paths, expand=expand)
    return JSONResponse(tree_items(reads, xet, found, expand=expand))


def ref_item(ref: RefRecord, kind: str) -> RefItem:
    short = ref.name if kind == "refs/pr/" else ref.name.removeprefix(kind)
    return RefItem(name=short, ref=ref.name, targetCommit=ref.commit_id)


@router.get(
    PREFIX + "/refs",
    responses=documented(400, 401, 404),
    response_model=RefsOut,
    response_model_exclude_none=True,
)
def list_refs(
    request: Request, reads: ReadsDep, principal: PrincipalDep, include_prs: bool = False
) -> RefsOut:
    target = api_repo_path(request)
    refs = reads.refs(principal, target.repo)

    def of(kind: str) -> list[RefItem]:
        return [ref_item(r, kind) for r in refs if r.name.startswith(kind)]

    return RefsOut(
        branches=of("refs/heads/"),
        tags=of("refs/tags/"),
        pullRequests=of("refs/pr/") if include_prs else None,
    )


def formatted_commit(title: str, message: str) -> FormattedCommit:
    """Title and message as HTML, as the Hub gives them: escaped text, the message's lines
    kept as paragraphs and line breaks."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    body = "".join(f"<p>{html.escape(p.strip()).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return FormattedCommit(title=html.escape(title), message=body)


@router.get(
    PREFIX + "/commits/{revision:path}",
    responses=documented(400, 401, 404),
    response_model=list[CommitItem],
)
def list_commits(
    request: Request,
    reads: ReadsDep,
    principal: PrincipalDep,
    p: Annotated[int, Query(ge=0)] = 0,
    expand: Annotated[list[str] | None, Query(alias="expand[]")] = None,
) -> Response:
    target = api_repo_path(request)
    history = reads.commits(principal, target.repo, "/".join(target.rest))
    page = history[p * COMMITS_PAGE : (p + 1) * COMMITS_PAGE]
    formatted = "formatted" in (expand or [])
    items = [
        CommitItem(
            id=c.id,
            title=c.title,
            message=c.message,
            date=iso_ms(c.created_ms),
            authors=[CommitAuthor(user=c.author)],
            formatted=formatted_commit(c.title, c.message) if formatted else None,
        ).model_dump(exclude_none=True)
        for c in page
    ]
    headers = {}
    if (p + 1) * COMMITS_PAGE < len(history):
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "p"]
        url = request.url.replace(query=urlencode(params + [("p", p + 1)]))
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(items, headers=headers)


@router.post(PREFIX + "/branch/{branch:path}", responses=documented(400, 401, 403, 404, 409))
def create_branch(
    request: Request, commits: CommitsDep, principal: PrincipalDep, body: BranchIn | None = None
) -> dict[str, str]:
    target = api_repo_path(request)
    branch = "/".join(target.rest)
    commits.create_branch(principal, target.repo, branch, body.startingPoint if body else None)
    return {"ref": f"refs/heads/{branch}"}


@router.delete(PREFIX + "/branch/{branch:path}", responses=documented(400, 401, 403, 404, 409))
def delete_branch(request: Request, commits: CommitsDep, principal: PrincipalDep) -> dict[str, str]:
    target = api_repo_path(request)
    ref = f"refs/heads/{'/'.join(target.rest)}"
    commits.delete_ref(principal, target.repo, ref)
    return {"deleted": ref}


@router.post(PREFIX + "/tag/{revision:path}", responses=documented(400, 401, 403, 404, 409))
def create_tag(
    request: Request, body: TagIn, commits: CommitsDep, principal: PrincipalDep
) -> dict[str, str]:
    target = api_repo_path(request)
    commits.create_tag(principal, target.repo, "/".join(target.rest), body.tag)
    return {"ref": f"refs/tags/{body.tag}"}


@router.delete(PREFIX + "/tag/{tag:path}", responses=documented(400, 401, 403, 404, 409))
def delete_tag(request: Request, commits: CommitsDep, principal: PrincipalDep) -> dict[str, str]:
    target = api_repo_path(request)
    tag = "/".join(target.rest)
    if not tag:
        raise InvalidRevisionError("A tag name is required")
    commits.delete_ref(principal, target.repo, f"refs/tags/{tag}")
    return {"deleted": f"refs/tags/{tag}"}
