"""Routing of repo ids without a namespace (`gpt2`), which the Hub client sends as they are.

`GET /api/models/gpt2/revision/main` and `HEAD /gpt2/resolve/main/config.json` have one
segment fewer than the routes, which are declared for `namespace/name`. This ASGI layer puts
`~` (`NO_NAMESPACE`) in the missing segment before routing, so every repo route answers them
and `parse_repo` turns `~/gpt2` back into the id `gpt2` (stored with the namespace "").

Which form a path has is read from the word after the repo: `/api/{T}/a/b/tree/...` is the repo
`a/b` (a namespaced form wins when both fit), `/api/{T}/a/tree/...` the repo `a`, and
`/api/{T}/a` alone is the info of `a`; `/a/resolve/...` and the LFS batch
`/a.git/info/lfs/...` (and their `/datasets/` forms) are the repo `a`. The action words come
from the app's own routes. So a namespaced repo whose name is an action word (`alice/refs`) is
reached through its sub-routes only; `/api/models/alice/refs` is the refs of the repo `alice`,
as on the Hub. Pages are left alone: a single-segment page path (`/alice`) is the author page.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.domain.names import NO_NAMESPACE, RepoType

REPO_PREFIX = "/api/{repo_type}/{namespace}/{name}/"
_PLURALS = frozenset(t.plural for t in RepoType)


def repo_actions(routes: Iterable[BaseRoute]) -> frozenset[str]:
    """The words that follow a repo in the API's routes: `tree`, `revision`, `commit`, ..."""
    paths = (getattr(route, "path", "") for route in routes)
    return frozenset(
        p.removeprefix(REPO_PREFIX).split("/", 1)[0] for p in paths if p.startswith(REPO_PREFIX)
    )


def missing_namespace_at(raw_path: str, actions: frozenset[str]) -> int | None:
    """Where (a character offset) the namespace of a repo id without one would go in this
    path, or None when the path names a namespaced repo, or no repo."""
    s = raw_path.split("/")
    if len(s) >= 4 and s[1] == "api" and s[2] in _PLURALS and s[3]:
        if len(s) >= 6 and s[5] in actions:
            return None  # /api/{T}/ns/name/<action>/...
        if len(s) == 4 or s[4] in actions:
            return len(f"/api/{s[2]}")
        return None
    offset = 2 if len(s) > 1 and s[1] == "datasets" else 1
    single = len(s) >= offset + 4 and s[offset + 1] == "resolve" and bool(s[offset])
    namespaced = len(s) >= offset + 5 and s[offset + 2] == "resolve"
    if len(s) >= offset + 2 and s[offset].endswith(".git") and s[offset + 1] == "info":
        single, namespaced = len(s[offset]) > len(".git"), False  # /{name}.git/info/lfs/...
    if single and not namespaced:
        return len("/datasets") if offset == 2 else 0
    return None


class CanonicalRepoPaths:
    """Puts `~` where a repo id without a namespace leaves a segment out (module docstring)."""

    def __init__(self, app: ASGIApp, actions: frozenset[str]) -> None:
        self.app = app
        self._actions = actions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            at = missing_namespace_at(raw.decode("latin-1").split("?", 1)[0], self._actions)
            if at is not None:
                mark = "/" + NO_NAMESPACE
                path = scope["path"]
                scope = dict(scope)
                # The prefix before `at` is literal ASCII (`/api/models`, `/datasets`, ""), the
                # same in the decoded path and the raw one.
                scope["path"] = path[:at] + mark + path[at:]
                scope["raw_path"] = raw[:at] + mark.encode() + raw[at:]
        await self.app(scope, receive, send)
