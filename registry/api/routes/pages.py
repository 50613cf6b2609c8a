"""Pages a person opens in a browser: the home page (`/`), search (`/search`), and the URLs the
Hub client prints: a repo
(`/{owner}/{name}`, `/datasets/{owner}/{name}`), its files (`.../tree/{rev}[/{folder}]`), one
file (`.../blob/{rev}/{path}`) and a commit (`.../commit/{sha}`).

Rendered by the node from its own state (templates in registry/api/templates, assets under
/static), so they work with no internet and on every replica. Reads go through the same
services as the API, with the same permissions: an unknown or private repo is a 404 page.
Registered after every API router, so an API route always wins over these patterns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from registry.api.cardhtml import card_html
from registry.api.deps import IdentityDep, ReadsDep, SearchDep
from registry.api.paths import parse_repo, raw_segments
from registry.api.session import ViewerDep
from registry.domain.errors import NotFoundError, RegistryError
from registry.domain.names import RESERVED_NAMESPACES, RepoId
from registry.domain.search import KINDS, SORTS, SearchQuery
from registry.service.reads import ReadService, Snapshot

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"  # CSS and icons, mounted at /static
router = APIRouter(include_in_schema=False)


@functools.cache
def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["filesize"] = _filesize
    return env


def _filesize(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _page(template: str, node_id: str, code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates().get_template(template).render(node_id=node_id, **context)
    return HTMLResponse(html, status_code=code)


def _not_found(node_id: str, exc: RegistryError) -> HTMLResponse:
    return _page("error.html", node_id, 404, status=404, heading="Not found", message=exc.message)


def _target(request: Request) -> tuple[RepoId, list[str]]:
    """The repo a page URL names, and what follows it."""
    parts = raw_segments(request)
    plural = "models"
    if parts[0] == "datasets":
        plural, parts = "datasets", parts[1:]
    if parts[0] in RESERVED_NAMESPACES:
        raise NotFoundError(f"No page at {request.url.path}")
    return parse_repo(plural, parts[0], parts[1]), parts[2:]


def _context(snap: Snapshot, revision: str, node_id: str) -> dict[str, Any]:
    repo = snap.repo.repo
    return {
        "repo_name": repo.full_name,
        "repo_path": f"{repo.type.url_prefix}{repo.full_name}",
        "revision": revision,
        "commit": snap.commit,
        "home": snap.repo.home_node,
        "home_elsewhere": snap.repo.home_node != node_id,
    }


def _shown(node: str, build: Callable[[], HTMLResponse]) -> HTMLResponse:
    """The page `build` makes, or the 404 page when what it names is not there to see."""
    try:
        return build()
    except NotFoundError as exc:
        return _not_found(node, exc)


def repo_page(
    request: Request, reads: ReadsDep, identity: IdentityDep, principal: ViewerDep
) -> HTMLResponse:
    node = identity.node_id

    def build() -> HTMLResponse:
        repo, rest = _target(request)
        if rest:
            raise NotFoundError(f"No page at {request.url.path}")
        snap = reads.snapshot(principal, repo, "main")
        card = reads.card(snap.commit.id)
        facts = [
            (label, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
            for label, key in (
                ("Kind", "kind"),
                ("Base model", "base_model"),
                ("License", "license"),
            )
            if (value := card.data.get(key))
        ]
        files = [f.entry for f in reads.tree(snap.commit.id)]
        context = _context(snap, "main", node)
        return _page(
            "repo.html", node, card=card_html(card.body), facts=facts, files=files, **context
        )

    return _shown(node, build)


def tree_page(
    request: Request, reads: ReadsDep, identity: IdentityDep, principal: ViewerDep
) -> HTMLResponse:
    node = identity.node_id

    def build() -> HTMLResponse:
        repo, rest = _target(request)
        revision, folder = rest[1], "/".join(rest[2:]).strip("/")
        snap = reads.snapshot(principal, repo, revision)
        prefix = f"{folder}/" if folder else ""
        files = [f.entry for f in reads.tree(snap.commit.id) if f.path.startswith(prefix)]
        if folder and not files:
            raise NotFoundError(f"No folder {folder!r} at {revision}")
        context = _context(snap, revision, node)
        return _page("tree.html", node, files=files, folder=folder, **context)

    return _shown(node, build)


def blob_page(
    request: Request, reads: ReadsDep, identity: IdentityDep, principal: ViewerDep
) -> HTMLResponse:
    node = identity.node_id

    def build() -> HTMLResponse:
        repo, rest = _target(request)
        revision, path = rest[1], "/".join(rest[2:])
        snap = reads.snapshot(principal, repo, revision)
        entry = reads.file(snap, path)
        return _page("blob.html", node, entry=entry, **_context(snap, revision, node))

    return _shown(node, build)


def commit_page(
    request: Request, reads: ReadsDep, identity: IdentityDep, principal: ViewerDep
) -> HTMLResponse:
    node = identity.node_id

    def build() -> HTMLResponse:
        repo, rest = _target(request)
        snap = reads.snapshot(principal, repo, rest[1])
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(snap.commit.created_ms / 1000))
        changes = _changes(reads, snap)
        context = _context(snap, snap.commit.id, node)
        return _page("commit.html", node, changes=changes, when=when, **context)

    return _shown(node, build)


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


def home_page(search: SearchDep, identity: IdentityDep, principal: ViewerDep) -> HTMLResponse:
    """Latest uploads, most downloaded, and a search form (uploads the index has not reached
    yet are listed too, as in the API)."""
    latest = search.search(principal, replace(_query("", "", "", "", "recent"), limit=10))
    popular = search.search(principal, replace(_query("", "", "", "", "downloads"), limit=10))
    return _page(
        "home.html",
        identity.node_id,
        query=_query("", "", "", "", "recent"),
        kinds=KINDS,
        sorts=SORTS,
        latest=latest.hits,
        popular=popular.hits,
    )


def search_page(
    request: Request,
    search: SearchDep,
    identity: IdentityDep,
    principal: ViewerDep,
    q: str = "",
    kind: str = "",
    base_model: str = "",
    tag: str = "",
    sort: str = "recent",
    offset: int = 0,
) -> HTMLResponse:
    query = _query(q, kind, base_model, tag, sort, offset)
    found = search.search(principal, query)
    next_offset = query.offset + len(found.hits) if found.more else None
    return _page(
        "search.html",
        identity.node_id,
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


def _changes(reads: ReadService, snap: Snapshot) -> list[tuple[str, str]]:
    """What the commit did to each path, against its parent."""
    ours = reads.tree_map(snap.commit.id)
    theirs = reads.tree_map(snap.commit.parent) if snap.commit.parent else {}
    changes = [("added", p) for p in ours if p not in theirs]
    changes += [("removed", p) for p in theirs if p not in ours]
    changes += [
        ("changed", p)
        for p in ours
        if p in theirs and ours[p].entry.blake3 != theirs[p].entry.blake3
    ]
    return sorted(changes, key=lambda c: c[1])


for _prefix in ("", "/datasets"):
    router.get(_prefix + "/{namespace}/{name}", response_class=HTMLResponse)(repo_page)
    for _kind, _page_of in (("tree", tree_page), ("blob", blob_page), ("commit", commit_page)):
        _route = f"{_prefix}/{{namespace}}/{{name}}/{_kind}/{{revision}}"
        router.get(_route, response_class=HTMLResponse)(_page_of)
        if _kind != "commit":
            router.get(_route + "/{path:path}", response_class=HTMLResponse)(_page_of)
