"""HuggingFace-compatible discussions and pull requests: list, read, open, comment, edit a
comment, rename, close or reopen, merge."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from registry.api.deps import DiscussionsDep, PrincipalDep, SettingsDep
from registry.api.errors import documented
from registry.api.paths import api_repo_path, public_base
from registry.domain.discussions import Discussion, Event
from registry.domain.names import RepoId
from registry.wire import (
    CommentEditIn,
    CommentIn,
    DiscussionCreatedOut,
    DiscussionDetailsOut,
    DiscussionIn,
    DiscussionOut,
    DiscussionRepo,
    DiscussionsOut,
    EventOut,
    MergeIn,
    Named,
    NewMessageOut,
    NewStatusOut,
    NewTitleOut,
    PullChanges,
    StatusIn,
    TitleIn,
    UpdatedCommentOut,
    iso_ms,
)

router = APIRouter(tags=["huggingface"])
PREFIX = "/api/{repo_type}/{namespace}/{name}/discussions"
TypeFilter = Annotated[str, Query(pattern="^(all|discussion|pull_request)$")]
StatusFilter = Annotated[str, Query(pattern="^(all|open|closed)$")]
Num = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a discussion's number


@router.get(PREFIX, responses=documented(400, 401, 404), response_model=DiscussionsOut)
def list_discussions(
    request: Request,
    discussions: DiscussionsDep,
    principal: PrincipalDep,
    p: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    type: TypeFilter = "all",
    status: StatusFilter = "all",
    author: str | None = None,
) -> DiscussionsOut:
    repo = api_repo_path(request).repo
    page = discussions.page(principal, repo, page=p, author=author, kind=type, status=status)
    items = [discussion_out(repo, d) for d in page.discussions]
    return DiscussionsOut(discussions=items, count=page.total, start=page.start)


@router.get(
    PREFIX + "/{num}",
    responses=documented(400, 401, 404),
    response_model=DiscussionDetailsOut,
    response_model_exclude_none=True,
)
def discussion_details(
    request: Request, num: Num, discussions: DiscussionsDep, principal: PrincipalDep
) -> DiscussionDetailsOut:
    repo = api_repo_path(request).repo
    details = discussions.details(principal, repo, num)
    d = details.discussion
    out = DiscussionDetailsOut(
        **discussion_out(repo, d).model_dump(), events=[event_out(e) for e in details.events]
    )
    if d.pull_request:
        out.changes = PullChanges(base=d.target or "", mergeCommitId=d.merge_commit)
        out.filesWithConflicts = details.conflicts
        out.diff = details.diff
    return out


@router.post(
    PREFIX, responses=documented(400, 401, 403, 404, 409), response_model=DiscussionCreatedOut
)
def create_discussion(
    request: Request,
    body: DiscussionIn,
    discussions: DiscussionsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> DiscussionCreatedOut:
    repo = api_repo_path(request).repo
    d = discussions.create(principal, repo, body.title, body.description, body.pullRequest)
    base = public_base(request, settings.public_url)
    url = f"{base}/{repo.type.url_prefix}{repo.full_name}/discussions/{d.num}"
    return DiscussionCreatedOut(num=d.num, url=url)


@router.post(
    PREFIX + "/{num}/comment",
    responses=documented(400, 401, 403, 404, 409),
    response_model=NewMessageOut,
)
def comment(
    request: Request,
    num: Num,
    body: CommentIn,
    discussions: DiscussionsDep,
    principal: PrincipalDep,
) -> NewMessageOut:
    event = discussions.comment(principal, api_repo_path(request).repo, num, body.comment)
    return NewMessageOut(newMessage=event_out(event))


@router.post(
    PREFIX + "/{num}/comment/{comment_id}/edit",
    responses=documented(400, 401, 403, 404, 409),
    response_model=UpdatedCommentOut,
)
def edit_comment(
    request: Request,
    num: Num,
    comment_id: str,
    body: CommentEditIn,
    discussions: DiscussionsDep,
    principal: PrincipalDep,
) -> UpdatedCommentOut:
    repo = api_repo_path(request).repo
    event = discussions.edit_comment(principal, repo, num, comment_id, body.content)
    return UpdatedCommentOut(updatedComment=event_out(event))


@router.post(
    PREFIX + "/{num}/title",
    responses=documented(400, 401, 403, 404, 409),
    response_model=NewTitleOut,
)
def rename(
    request: Request, num: Num, body: TitleIn, discussions: DiscussionsDep, principal: PrincipalDep
) -> NewTitleOut:
    event = discussions.rename(principal, api_repo_path(request).repo, num, body.title)
    return NewTitleOut(newTitle=event_out(event))


@router.post(
    PREFIX + "/{num}/status",
    responses=documented(400, 401, 403, 404, 409),
    response_model=NewStatusOut,
)
def change_status(
    request: Request, num: Num, body: StatusIn, discussions: DiscussionsDep, principal: PrincipalDep
) -> NewStatusOut:
    repo = api_repo_path(request).repo
    event = discussions.set_status(principal, repo, num, body.status, body.comment)
    return NewStatusOut(newStatus=event_out(event))


@router.post(PREFIX + "/{num}/merge", responses=documented(400, 401, 403, 404, 409, 412))
def merge(
    request: Request,
    num: Num,
    discussions: DiscussionsDep,
    principal: PrincipalDep,
    body: MergeIn | None = None,
) -> dict[str, str]:
    repo = api_repo_path(request).repo
    sha = discussions.merge(principal, repo, num, body.comment if body else None)
    return {"commitOid": sha}


def discussion_out(repo: RepoId, d: Discussion) -> DiscussionOut:
    return DiscussionOut(
        num=d.num,
        title=d.title,
        status=d.status,
        createdAt=iso_ms(d.created_ms),
        isPullRequest=d.pull_request,
        author=Named(name=d.author),
        repo=DiscussionRepo(name=repo.full_name, type=repo.type.value),
    )


def event_out(e: Event) -> EventOut:
    data: dict[str, Any] = dict(e.data)
    if e.type == "comment":
        text = e.data.get("text", "")
        data = {
            "edited": e.edited_ms is not None,
            "hidden": False,
            "latest": {
                "raw": text,
                "html": f"<p>{html.escape(text)}</p>",
                "updatedAt": iso_ms(e.edited_ms or e.created_ms),
                "author": {"name": e.author},
            },
            "numEdits": 0 if e.edited_ms is None else 1,
            "editors": [e.author],
            "reactions": [],
            "history": [],
        }
    return EventOut(
        id=e.id, type=e.type, createdAt=iso_ms(e.created_ms), author=Named(name=e.author), data=data
    )
