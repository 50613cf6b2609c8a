"""Tiny request-scoped providers: each route depends on the parts it uses; no logic here.

They are `async` so FastAPI calls them on the event loop instead of the threadpool: the token
lookup is cached after its first use, and the hot read routes answer cache hits on the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from registry.domain.access import Principal
from registry.service.auth import AuthService
from registry.service.commits import CommitService
from registry.service.discussions import DiscussionService
from registry.service.feed import FeedService
from registry.service.files import FileService
from registry.service.identity import NodeIdentity
from registry.service.lineage import LineageService
from registry.service.lookup import LookupService
from registry.service.madewith import MadeWithService
from registry.service.mirrors import MirrorService
from registry.service.model_metadata import ModelMetadataService
from registry.service.orgs import OrgService
from registry.service.peers import PeerService
from registry.service.reads import ReadService
from registry.service.repoinfo import RepoInfoService
from registry.service.repopage import RepoPageService
from registry.service.repos import RepoService
from registry.service.rewrite import RewriteService
from registry.service.search import SearchService
from registry.service.services import Services
from registry.service.settings import RepoSettingsService
from registry.service.snapshot import SnapshotService
from registry.service.status import StatusService
from registry.service.uploads import UploadService
from registry.service.workflows import WorkflowService
from registry.service.xet import XetService
from registry.settings import Settings


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None: no bearer token)."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def services_of(scope: Scope) -> Services | None:
    """The node's services, from the app serving this request (None: only describing)."""
    found: Services | None = getattr(scope["app"].state, "services", None)
    return found


async def get_principal(request: Request) -> Principal:
    auth: AuthService = request.app.state.services.auth
    return auth.authenticate(bearer_token(request.scope))


def _part(name: str) -> Callable[[Request], Awaitable[Any]]:
    async def provide(request: Request) -> Any:
        return getattr(request.app.state.services, name)

    provide.__name__ = f"get_{name}"
    return provide


PrincipalDep = Annotated[Principal, Depends(get_principal)]
SettingsDep = Annotated[Settings, Depends(_part("settings"))]
IdentityDep = Annotated[NodeIdentity, Depends(_part("identity"))]
ReposDep = Annotated[RepoService, Depends(_part("repos"))]
ReadsDep = Annotated[ReadService, Depends(_part("reads"))]
RepoInfoDep = Annotated[RepoInfoService, Depends(_part("repoinfo"))]
CommitsDep = Annotated[CommitService, Depends(_part("commits"))]
RewriteDep = Annotated[RewriteService, Depends(_part("rewrite"))]
DiscussionsDep = Annotated[DiscussionService, Depends(_part("discussions"))]
UploadsDep = Annotated[UploadService, Depends(_part("uploads"))]
FilesDep = Annotated[FileService, Depends(_part("files"))]
FeedDep = Annotated[FeedService, Depends(_part("feed"))]
SnapshotDep = Annotated[SnapshotService, Depends(_part("snapshots"))]
PeersDep = Annotated[PeerService, Depends(_part("peers"))]
MirrorsDep = Annotated[MirrorService, Depends(_part("mirrors"))]
StatusDep = Annotated[StatusService, Depends(_part("status"))]
LookupDep = Annotated[LookupService, Depends(_part("lookup"))]
MadeWithDep = Annotated[MadeWithService, Depends(_part("madewith"))]
LineageDep = Annotated[LineageService, Depends(_part("lineage"))]
SearchDep = Annotated[SearchService, Depends(_part("search"))]
ModelMetadataDep = Annotated[ModelMetadataService, Depends(_part("model_metadata"))]
XetDep = Annotated[XetService, Depends(_part("xet"))]
RepoSettingsDep = Annotated[RepoSettingsService, Depends(_part("repo_settings"))]
RepoPagesDep = Annotated[RepoPageService, Depends(_part("repo_pages"))]
AuthDep = Annotated[AuthService, Depends(_part("auth"))]
OrgsDep = Annotated[OrgService, Depends(_part("orgs"))]
WorkflowsDep = Annotated[WorkflowService, Depends(_part("workflows"))]
