"""Mirrors of this node (admin): add, list with status, remove. No restart needed."""

from __future__ import annotations

import time

from fastapi import APIRouter

from registry.api.deps import MirrorsDep, PrincipalDep
from registry.api.errors import documented
from registry.service.mirrors import MirrorView
from registry.wire import MirrorIn, MirrorMoveOut, MirrorOut, MirrorRollbackOut, iso_ms

router = APIRouter(prefix="/v1/mirrors", tags=["mirrors"])


def mirror_out(view: MirrorView) -> MirrorOut:
    oldest = view.oldest_pending_ms
    return MirrorOut(
        name=view.name,
        kind=view.kind,
        url=view.url,
        repos=view.repos,
        token_set=view.token_set,
        state=view.state,
        backlog=view.backlog,
        oldest_pending_seconds=round(time.time() - oldest / 1000, 3) if oldest else None,
        pushed=view.pushed,
        last_success=iso_ms(view.last_success_ms) if view.last_success_ms else None,
        last_error=view.last_error,
        last_error_at=iso_ms(view.last_error_ms) if view.last_error_ms else None,
        rollbacks=view.rollbacks,
        recent_rollbacks=[
            MirrorRollbackOut(
                repo=r.repo.split("/", 1)[1],
                repo_type=r.repo.split("/", 1)[0],
                ref=r.ref,
                lost_commit=r.lost_commit,
                new_commit=r.new_commit,
                kept_as=r.kept_as,
                at=iso_ms(r.at_ms),
            )
            for r in view.recent_rollbacks
        ],
        moved_repos=[
            MirrorMoveOut(
                repo=m.old.split("/", 1)[1],
                repo_type=m.repo.repo.type.value,
                to=m.repo.repo.full_name,
                at=iso_ms(m.moved_ms),
            )
            for m in view.moved
        ],
    )


@router.post(
    "", responses=documented(400, 401, 403, 409), status_code=201, response_model=MirrorOut
)
def add_mirror(body: MirrorIn, mirrors: MirrorsDep, principal: PrincipalDep) -> MirrorOut:
    """Push every new commit of the repos matching `repos` (and what they hold now)."""
    added = mirrors.add(principal, body.name, body.kind, body.url, body.token, body.repos)
    return mirror_out(added)


@router.get("", responses=documented(401, 403), response_model=list[MirrorOut])
def list_mirrors(mirrors: MirrorsDep, principal: PrincipalDep) -> list[MirrorOut]:
    return [mirror_out(v) for v in mirrors.listing(principal)]


@router.get("/{name}", responses=documented(401, 403, 404), response_model=MirrorOut)
def get_mirror(name: str, mirrors: MirrorsDep, principal: PrincipalDep) -> MirrorOut:
    return mirror_out(mirrors.view(principal, name))


@router.delete("/{name}", responses=documented(401, 403, 404))
def remove_mirror(name: str, mirrors: MirrorsDep, principal: PrincipalDep) -> dict[str, str]:
    mirrors.remove(principal, name)
    return {"deleted": name}
