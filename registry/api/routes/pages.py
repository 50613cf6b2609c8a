"""Pages a person opens in a browser: the home page (`/`), search (`/search`), an owner's repos
(`/{owner}`), and the URLs the Hub client prints: a repo (`/{owner}/{name}`,
`/datasets/{owner}/{name}`), its files (`.../tree/{rev}[/{folder}]`), one file
(`.../blob/{rev}/{path}`), its history (`.../commits/{rev}`) and a commit (`.../commit/{sha}`).

Rendered by the node from its own state (templates in registry/api/templates, assets under
/static), so they work with no internet and on every replica, and without JavaScript (a small
script only adds copy buttons). Reads go through the same services as the API, with the same
permissions: an unknown or private repo is a 404 page. Registered after every API router, so
an API route always wins over these patterns; reserved names are 404 pages.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from registry.api.cardhtml import card_html
from registry.api.deps import DiscussionsDep, RepoPagesDep, RepoSettingsDep, SearchDep
from registry.api.lineage_svg import layout
from registry.api.paths import parse_repo, raw_segments
from registry.api.session import ViewerDep, csrf_token, session_token
from registry.domain.access import Principal
from registry.domain.errors import NotFoundError, RepoMovedError
from registry.domain.names import RESERVED_NAMESPACES, RepoId
from registry.domain.search import KINDS, SORTS, SearchQuery
from registry.service.repopage import PREVIEW_BYTES, Header

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"  # CSS, icons and the copy-button script, mounted at /static
router = APIRouter(include_in_schema=False)


@functools.cache
def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["filesize"] = _filesize
    env.filters["segment"] = lambda value: quote(str(value), safe="")  # one path segment
    env.filters["ago"] = _ago
    env.filters["utc"] = _utc
    return env


def _filesize(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _ago(seconds: float | None) -> str:
    """`3 minutes ago`; None is a time not known since this node started."""
    if seconds is None:
        return "not since this node started"
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length or unit == "second":
            count = int(seconds // length)
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return ""


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


# Pages load only the node's own scripts, styles and images: whatever a card or a file name
# slips past escaping and sanitizing could run or fetch nothing.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def render_page(
    request: Request, viewer: Principal, template: str, code: int = 200, **context: Any
) -> HTMLResponse:
    """A page from a template, with who is looking (`viewer`, `csrf`) for the header."""
    node_id = request.app.state.services.identity.node_id
    csrf = csrf_token(session_token(request))
    html = (
        _templates()
        .get_template(template)
        .render(node_id=node_id, viewer=viewer, csrf=csrf, **context)
    )
    return HTMLResponse(html, status_code=code, headers={"Content-Security-Policy": CSP})


def _shown(request: Request, viewer: Principal, build: Callable[[], HTMLResponse]) -> HTMLResponse:
    """The page `build` makes, or the 404 page when what it names is not there to see (a
    moved repo's old id is answered with a redirect by the error handler)."""
    try:
        return build()
    except NotFoundError as exc:
        if isinstance(exc, RepoMovedError):
            raise
        return render_page(
            request, viewer, "error.html", 404, status=404, heading="Not found", message=exc.message
        )


def _target(request: Request) -> tuple[RepoId, list[str]]:
    """The repo a page URL names, and what follows it."""
    parts = raw_segments(request)
    plural = "models"
    if parts[0] == "datasets":
        plural, parts = "datasets", parts[1:]
    if parts[0] in RESERVED_NAMESPACES:
        raise NotFoundError(f"No page at {request.url.path}")
    return parse_repo(plural, parts[0], parts[1]), parts[2:]


def _head(header: Header) -> dict[str, Any]:
    """What `_repohead.html` (and `_actions.html`) read."""
    repo = header.snap.repo
    return {
        "repo_name": repo.repo.full_name,
        "owner": repo.repo.namespace,
        "repo_path": f"{repo.repo.type.url_prefix}{repo.repo.full_name}",
        "revision": header.revision,
        "commit": header.snap.commit,
        "refs": header.refs,
        "home": repo.home_node,
        "home_elsewhere": header.home is not None,
        "home_status": header.home,
    }


def repo_page(
    request: Request,
    pages: RepoPagesDep,
    settings: RepoSettingsDep,
    viewer: ViewerDep,
    rev: str = "main",
) -> HTMLResponse:
    def build() -> HTMLResponse:
        repo, rest = _target(request)
        if rest:
            raise NotFoundError(f"No page at {request.url.path}")
        view = pages.view(viewer, repo, rev)
        return render_page(
            request,
            viewer,
            "repo.html",
            view=view,
            card=card_html(view.card.body),
            graph=layout(repo, view.family),
            gate=settings.gate_view(viewer, view.header.snap.repo),
            **_head(view.header),
        )

    return _shown(request, viewer, build)


def tree_page(request: Request, pages: RepoPagesDep, viewer: ViewerDep) -> HTMLResponse:
    def build() -> HTMLResponse:
        repo, rest = _target(request)
        revision, folder = rest[1], "/".join(rest[2:]).strip("/")
        header = pages.header(viewer, repo, revision)
        files = pages.files(header.snap, folder)
        if folder and not files:
            raise NotFoundError(f"No folder {folder!r} at {revision}")
        return render_page(
            request, viewer, "tree.html", files=files, folder=folder, **_head(header)
        )

    return _shown(request, viewer, build)


def blob_page(request: Request, pages: RepoPagesDep, viewer: ViewerDep) -> HTMLResponse:
    def build() -> HTMLResponse:
        repo, rest = _target(request)
        header = pages.header(viewer, repo, rest[1])
        file = pages.file(header.snap, "/".join(rest[2:]))
        preview = pages.preview(file.entry)
        context = _head(header) | {"entry": file.entry, "limit": PREVIEW_BYTES}
        return render_page(request, viewer, "blob.html", file=file, preview=preview, **context)

    return _shown(request, viewer, build)


def commits_page(
    request: Request, pages: RepoPagesDep, viewer: ViewerDep, p: int = 1
) -> HTMLResponse:
    def build() -> HTMLResponse:
        repo, rest = _target(request)
        header = pages.header(viewer, repo, rest[1])
        history = pages.history(viewer, repo, rest[1], p)
        return render_page(request, viewer, "commits.html", history=history, **_head(header))

    return _shown(request, viewer, build)


def commit_page(request: Request, pages: RepoPagesDep, viewer: ViewerDep) -> HTMLResponse:
    def build() -> HTMLResponse:
        repo, rest = _target(request)
        header = pages.header(viewer, repo, rest[1])
        header = replace(header, revision=header.snap.commit.id)
        changes = pages.changes(header.snap)
        return render_page(request, viewer, "commit.html", changes=changes, **_head(header))

    return _shown(request, viewer, build)


def discussions_page(
    request: Request,
    pages: RepoPagesDep,
    discussions: DiscussionsDep,
    viewer: ViewerDep,
    p: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    """The repo's discussions and pull requests, newest first."""

    def build() -> HTMLResponse:
        repo, _ = _target(request)
        header = pages.header(viewer, repo, "main")
        found = discussions.page(viewer, repo, page=p - 1)
        more = found.start + len(found.discussions) < found.total
        return render_page(
            request, viewer, "discussions.html", found=found, page=p, more=more, **_head(header)
        )

    return _shown(request, viewer, build)


def discussion_page(
    request: Request,
    num: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
    pages: RepoPagesDep,
    discussions: DiscussionsDep,
    viewer: ViewerDep,
) -> HTMLResponse:
    """One discussion or pull request with its events."""

    def build() -> HTMLResponse:
        repo, _ = _target(request)
        header = pages.header(viewer, repo, "main")
        details = discussions.details(viewer, repo, num)
        return render_page(request, viewer, "discussion.html", details=details, **_head(header))

    return _shown(request, viewer, build)


def author_page(
    request: Request, owner: str, pages: RepoPagesDep, viewer: ViewerDep, p: int = 1
) -> HTMLResponse:
    """A user's or organization's repos that the viewer may see (404 when there are none)."""

    def build() -> HTMLResponse:
        found = pages.authored(viewer, owner, p)
        return render_page(request, viewer, "author.html", owner=owner, found=found)

    return _shown(request, viewer, build)


PAGE_SIZE = 20


def _query(q: str, kind: str, base_model: str, tag: str, sort: str, offset: int = 0) -> SearchQuery:
    """A search from a form's fields; what a form cannot mean is ignored, not refused."""
    return SearchQuery(
        "model",
        q[:500],
        kind or None,
        base_model or None,
        (tag,) if tag else (),
        None,
        sort if sort in SORTS else "recent",
        max(0, min(offset, 100_000)),
        PAGE_SIZE,
    )


def home_page(request: Request, search: SearchDep, viewer: ViewerDep) -> HTMLResponse:
    """Latest uploads, most downloaded, and a search form (uploads the index has not reached
    yet are listed too, as in the API)."""
    latest = search.search(viewer, replace(_query("", "", "", "", "recent"), limit=10))
    popular = search.search(viewer, replace(_query("", "", "", "", "downloads"), limit=10))
    return render_page(
        request,
        viewer,
        "home.html",
        query=_query("", "", "", "", "recent"),
        kinds=KINDS,
        sorts=SORTS,
        latest=latest.hits,
        popular=popular.hits,
    )


def search_page(
    request: Request,
    search: SearchDep,
    viewer: ViewerDep,
    q: str = "",
    kind: str = "",
    base_model: str = "",
    tag: str = "",
    sort: str = "recent",
    offset: int = 0,
) -> HTMLResponse:
    query = _query(q, kind, base_model, tag, sort, offset)
    found = search.search(viewer, query)
    next_offset = query.offset + len(found.hits) if found.more else None
    return render_page(
        request,
        viewer,
        "search.html",
        query=query,
        kinds=KINDS,
        sorts=SORTS,
        hits=found.hits,
        behind=found.lag.behind_entries,
        next_offset=next_offset,
        next_url=str(request.url.include_query_params(offset=next_offset or 0)),
    )


router.get("/", response_class=HTMLResponse)(home_page)
router.get("/search", response_class=HTMLResponse)(search_page)
for _prefix in ("", "/datasets"):
    router.get(_prefix + "/{namespace}/{name}", response_class=HTMLResponse)(repo_page)
    for _kind, _page_of in (
        ("tree", tree_page),
        ("blob", blob_page),
        ("commits", commits_page),
        ("commit", commit_page),
    ):
        _route = f"{_prefix}/{{namespace}}/{{name}}/{_kind}/{{revision}}"
        router.get(_route, response_class=HTMLResponse)(_page_of)
        if _kind in ("tree", "blob"):
            router.get(_route + "/{path:path}", response_class=HTMLResponse)(_page_of)
    _discussions = f"{_prefix}/{{namespace}}/{{name}}/discussions"
    router.get(_discussions, response_class=HTMLResponse)(discussions_page)
    router.get(_discussions + "/{num:int}", response_class=HTMLResponse)(discussion_page)
router.get("/{owner}", response_class=HTMLResponse)(author_page)  # last: any other name wins
