"""Pages that change things, for a person signed in with a token: sign in and out, create a
repo (`/new`), upload files (`/{repo}/upload/{rev}`), edit the card's metadata
(`/{repo}/edit`), delete a file (`/{repo}/delete/{rev}/{path}`), and ask for access to a gated
repo or answer such requests (`/{repo}/access`).

Every write goes through the same services as the API (permissions, limits, the change log);
these routes only read forms and render. Each form carries the session's CSRF token and a POST
must come from this node's own origin (registry/api/session.py). Without JavaScript a form
posts and the node answers with a redirect to what changed; with it, the upload form shows a
progress bar (static/upload.js) and gets JSON back. A replica's forms are refused by the
services, naming the home node to go to.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from registry.api.deps import (
    AuthDep,
    CommitsDep,
    ModelMetadataDep,
    ReadsDep,
    ReposDep,
    RepoSettingsDep,
    SettingsDep,
    UploadsDep,
)
from registry.api.errors import error_response, status_of
from registry.api.formstream import read_form
from registry.api.paths import parse_repo, raw_segments
from registry.api.routes.pages import render_page
from registry.api.session import COOKIE, ViewerDep, csrf_token, session_token
from registry.domain.access import Principal
from registry.domain.errors import (
    CrossOriginError,
    CsrfError,
    InvalidError,
    RegistryError,
    UnauthorizedError,
)
from registry.domain.names import RepoId, RepoType, check_repo_path
from registry.domain.search import KINDS
from registry.service.commits import Delete
from registry.settings import Settings

router = APIRouter(include_in_schema=False)
SESSION_DAYS = 30


def _failed(request: Request, viewer: Principal, exc: RegistryError) -> Response:
    """The error as JSON for a script (Accept: application/json), else as a page."""
    status = status_of(exc)
    if "application/json" in request.headers.get("accept", ""):
        return error_response(status, exc.code, exc.message, exc.detail)
    return render_page(
        request, viewer, "error.html", status, status=status, heading=exc.code, message=exc.message
    )


def _own_origin(request: Request, settings: Settings) -> None:
    """Refuse a POST a page of another site sent (its browser names the page's origin)."""
    origin = request.headers.get("origin")
    if origin is None and (referer := request.headers.get("referer")):
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is None:
        return  # not a browser, or one that names no origin: the CSRF token still decides
    ours = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if settings.public_url:
        public = urlsplit(settings.public_url)
        ours.add(f"{public.scheme}://{public.netloc}")
    if origin not in ours:
        raise CrossOriginError(f"This form was posted from {origin}, not from this node's pages")


def _checked(request: Request, settings: Settings, viewer: Principal, given: str | None) -> None:
    """A signed-in session's form, posted from this node's own pages.

    Raises:
        CrossOriginError: posted from another site's page.
        UnauthorizedError: not signed in (or the session's token was revoked).
        CsrfError: the form lacks this session's CSRF token.
    """
    _own_origin(request, settings)
    if viewer.anonymous:
        raise UnauthorizedError("Sign in with a token first")
    expected = csrf_token(session_token(request))
    if not given or given != expected:
        raise CsrfError("This form is from an older session or another site; reload the page")


def _next_path(value: str | None) -> str:
    """Where to go after signing in: a path on this node, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _sign_in_first(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)


def _repo_of(request: Request) -> tuple[RepoId, str]:
    """The repo a form's URL names, and its page path (`datasets/ns/name` or `ns/name`)."""
    parts = raw_segments(request)
    plural = "models"
    if parts[0] == "datasets":
        plural, parts = "datasets", parts[1:]
    repo = parse_repo(plural, parts[0], parts[1])
    return repo, f"{repo.type.url_prefix}{repo.full_name}"


def _after_action(request: Request, path: str) -> list[str]:
    """The URL's segments after the repo's page path and its action word (`delete`)."""
    return raw_segments(request)[len(path.split("/")) + 1 :]


# --- signing in ----------------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, viewer: ViewerDep, next: str = "/") -> HTMLResponse:
    return render_page(request, viewer, "signin.html", next=_next_path(next), problem=None)


@router.post("/signin")
async def signin(
    request: Request, auth: AuthDep, settings: SettingsDep, viewer: ViewerDep
) -> Response:
    form = await request.form()
    token, target = str(form.get("token") or "").strip(), _next_path(str(form.get("next")))
    try:
        _own_origin(request, settings)
        signed = await run_in_threadpool(auth.authenticate, token or None)
        if signed.anonymous:
            raise UnauthorizedError("Paste a token to sign in")
    except UnauthorizedError as exc:
        return render_page(request, viewer, "signin.html", 401, next=target, problem=exc.message)
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    answer = RedirectResponse(target, status_code=303)
    secure = (settings.public_url or str(request.base_url)).startswith("https://")
    answer.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    return answer


@router.post("/signout")
async def signout(request: Request, settings: SettingsDep, viewer: ViewerDep) -> Response:
    form = await request.form()
    try:
        _checked(request, settings, viewer, str(form.get("csrf") or ""))
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


# --- creating a repo -----------------------------------------------------------------------


@router.get("/new", response_class=HTMLResponse)
def new_repo_page(request: Request, viewer: ViewerDep) -> Response:
    if viewer.anonymous:
        return _sign_in_first(request)
    return render_page(request, viewer, "newrepo.html", values={"owner": viewer.user}, problem=None)


@router.post("/new")
async def new_repo(
    request: Request, repos: ReposDep, settings: SettingsDep, viewer: ViewerDep
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        _checked(request, settings, viewer, form.get("csrf"))
        kind = RepoType.DATASET if form.get("type") == "dataset" else RepoType.MODEL
        repo = RepoId.parse(kind, form.get("owner", "").strip(), form.get("name", "").strip())
        await run_in_threadpool(repos.create, viewer, repo, private=bool(form.get("private")))
    except (CrossOriginError, CsrfError, UnauthorizedError) as exc:
        return _failed(request, viewer, exc)
    except RegistryError as exc:  # a taken or invalid name: the form again, filled in
        code = status_of(exc)
        return render_page(request, viewer, "newrepo.html", code, values=form, problem=exc.message)
    return RedirectResponse(f"/{repo.type.url_prefix}{repo.full_name}", status_code=303)


# --- uploading files -----------------------------------------------------------------------


def upload_page(request: Request, reads: ReadsDep, viewer: ViewerDep) -> Response:
    if viewer.anonymous:
        return _sign_in_first(request)
    try:
        repo, path = _repo_of(request)
        revision = raw_segments(request)[-1]
        snap = reads.snapshot(viewer, repo, revision)
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    return render_page(
        request,
        viewer,
        "upload.html",
        repo_path=path,
        repo_name=repo.full_name,
        revision=revision,
        commit=snap.commit,
    )


async def upload(
    request: Request,
    uploads: UploadsDep,
    commits: CommitsDep,
    settings: SettingsDep,
    viewer: ViewerDep,
) -> Response:
    """Store the form's files as they arrive, then commit them in one commit."""
    try:
        repo, path = _repo_of(request)
        revision = raw_segments(request)[-1]

        checked: list[bool] = []

        def path_of(fields: dict[str, str], name: str) -> str:
            if not checked:  # once, before the first file's bytes
                _checked(request, settings, viewer, fields.get("csrf"))
                commits.require_writable(viewer, repo, revision)
                checked.append(True)
            folder = fields.get("folder", "").strip().strip("/")
            return check_repo_path(f"{folder}/{name}" if folder else name)

        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            await run_in_threadpool(uploads.require_room, int(declared))
        form = await read_form(request, uploads, path_of, settings.limits.max_blob_bytes)
        stored = form.files
        if not stored:
            _checked(request, settings, viewer, form.fields.get("csrf"))
            raise InvalidError("Choose at least one file to upload")
        operations = await run_in_threadpool(commits.adding, viewer, repo, revision, stored)
        names = ", ".join(p for p, _ in stored[:3]) + (" ..." if len(stored) > 3 else "")
        result = await run_in_threadpool(
            lambda: commits.commit(
                viewer,
                repo,
                revision,
                title=form.fields.get("title", "").strip() or f"Upload {names}",
                message=form.fields.get("description", "").strip(),
                operations=operations,
            )
        )
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    url = f"/{path}/commit/{result.sha}"
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"commit": result.sha, "url": url, "files": [p for p, _ in stored]})
    return RedirectResponse(url, status_code=303)


# --- editing the card's metadata -----------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _lineage(text: str, before: list[dict[str, object]]) -> list[dict[str, object]]:
    """One parent per line (`owner/name[@rev]` or a file hash); what a line kept is kept."""
    known = {str(e.get("repo") or e.get("hash")): e for e in before if isinstance(e, dict)}
    entries = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line:
            key = "repo" if "/" in line else "hash"
            entries.append(known.get(line) or {key: line})
    return entries


def edit_page(request: Request, reads: ReadsDep, viewer: ViewerDep) -> Response:
    if viewer.anonymous:
        return _sign_in_first(request)
    try:
        repo, path = _repo_of(request)
        snap = reads.snapshot(viewer, repo, "main")
        card = reads.card(snap.commit.id)
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    data = card.data
    lineage = [
        str(e.get("repo") or e.get("hash"))
        for e in data.get("lineage") or []
        if isinstance(e, dict) and (e.get("repo") or e.get("hash"))
    ]
    values = {
        "kind": card.kind or "",
        "base_model": card.base_model or "",
        "license": card.license or "",
        "tags": ", ".join(str(t) for t in data.get("tags") or [] if isinstance(t, str | int)),
        "trigger_words": "\n".join(card.trigger_words),
        "lineage": "\n".join(lineage),
    }
    return render_page(
        request,
        viewer,
        "edit.html",
        repo_path=path,
        repo_name=repo.full_name,
        revision="main",
        commit=snap.commit,
        values=values,
        kinds=KINDS,
        problem=None,
    )


async def edit(
    request: Request,
    metadata: ModelMetadataDep,
    reads: ReadsDep,
    settings: SettingsDep,
    viewer: ViewerDep,
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        _checked(request, settings, viewer, form.get("csrf"))
        repo, path = _repo_of(request)
        snap = await run_in_threadpool(reads.snapshot, viewer, repo, "main")
        before = (await run_in_threadpool(reads.card, snap.commit.id)).data.get("lineage")
        changes: dict[str, object] = {
            "kind": form.get("kind") or None,
            "base_model": form.get("base_model", "").strip() or None,
            "license": form.get("license", "").strip() or None,
            "tags": _lines(form.get("tags", "")) or None,
            "trigger_words": [
                w.strip() for w in form.get("trigger_words", "").splitlines() if w.strip()
            ]
            or None,
            "lineage": _lineage(form.get("lineage", ""), before if isinstance(before, list) else [])
            or None,
        }
        sha, _ = await run_in_threadpool(
            lambda: metadata.update(viewer, repo, changes, parent_commit=form.get("parent") or None)
        )
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    return RedirectResponse(f"/{path}/commit/{sha}", status_code=303)


# --- deleting a file -----------------------------------------------------------------------


def delete_page(request: Request, reads: ReadsDep, viewer: ViewerDep) -> Response:
    if viewer.anonymous:
        return _sign_in_first(request)
    try:
        repo, path = _repo_of(request)
        rest = _after_action(request, path)
        revision, file_path = rest[0], "/".join(rest[1:])
        snap = reads.snapshot(viewer, repo, revision)
        entry = reads.file(snap, file_path)
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    return render_page(
        request,
        viewer,
        "delete.html",
        repo_path=path,
        repo_name=repo.full_name,
        revision=revision,
        commit=snap.commit,
        entry=entry,
    )


async def delete(
    request: Request, commits: CommitsDep, settings: SettingsDep, viewer: ViewerDep
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        _checked(request, settings, viewer, form.get("csrf"))
        repo, path = _repo_of(request)
        rest = _after_action(request, path)
        revision, file_path = rest[0], check_repo_path("/".join(rest[1:]))
        result = await run_in_threadpool(
            lambda: commits.commit(
                viewer,
                repo,
                revision,
                title=form.get("title", "").strip() or f"Delete {file_path}",
                message="",
                operations=[Delete(file_path, folder=False)],
                parent_commit=form.get("parent") or None,
            )
        )
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    return RedirectResponse(f"/{path}/commit/{result.sha}", status_code=303)


# --- access requests of a gated repo ------------------------------------------------------


async def access(
    request: Request, repo_settings: RepoSettingsDep, settings: SettingsDep, viewer: ViewerDep
) -> Response:
    """Ask for access (`action=ask`), or accept or reject a user's request (the owner)."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        _checked(request, settings, viewer, form.get("csrf"))
        repo, path = _repo_of(request)
        action = form.get("action", "")
        if action == "ask":
            await run_in_threadpool(repo_settings.ask, viewer, repo)
        else:
            user = form.get("user", "")
            await run_in_threadpool(repo_settings.handle, viewer, repo, user, action)
    except RegistryError as exc:
        return _failed(request, viewer, exc)
    return RedirectResponse(f"/{path}#access", status_code=303)


for _prefix in ("", "/datasets"):
    _repo = _prefix + "/{namespace}/{name}"
    router.get(_repo + "/upload/{revision}", response_class=HTMLResponse)(upload_page)
    router.post(_repo + "/upload/{revision}")(upload)
    router.get(_repo + "/edit", response_class=HTMLResponse)(edit_page)
    router.post(_repo + "/edit")(edit)
    router.get(_repo + "/delete/{revision}/{path:path}", response_class=HTMLResponse)(delete_page)
    router.post(_repo + "/delete/{revision}/{path:path}")(delete)
    router.post(_repo + "/access")(access)
