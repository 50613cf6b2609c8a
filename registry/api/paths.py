"""Parsing of HF-style URLs from the raw path, where `%2F` inside a revision must survive.

ASGI servers decode `%2F` in `scope["path"]`, so a branch `dev/x` would be ambiguous there;
these helpers split `scope["raw_path"]` on literal `/` and unquote each piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import Request

from registry.domain.errors import InvalidError, InvalidNameError, RepoNotFoundError
from registry.domain.names import NO_NAMESPACE, RepoId, RepoType


@dataclass(frozen=True)
class RepoPath:
    repo: RepoId
    rest: list[str]  # decoded segments after the action word (e.g. after `/tree/`)


def raw_segments(request: Request) -> list[str]:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    try:
        return [unquote(p, errors="strict") for p in path.split("/")[1:]]
    except UnicodeDecodeError:
        raise InvalidError("The URL path is not percent-encoded UTF-8") from None


def api_repo_path(request: Request) -> RepoPath:
    """`/api/{T}/{ns}/{name}/<action>/<rest...>` -> repo and rest."""
    parts = raw_segments(request)
    return RepoPath(parse_repo(parts[1], parts[2], parts[3]), parts[5:])


def parse_repo(plural: str, namespace: str, name: str) -> RepoId:
    repo_type = RepoType.from_plural(plural)
    if repo_type is None:
        raise RepoNotFoundError(f"Unsupported repo type {plural!r}")
    try:
        if namespace == NO_NAMESPACE:  # a repo id without a namespace (CanonicalRepoPaths)
            return RepoId.canonical(repo_type, name)
        return RepoId.parse(repo_type, namespace, name)
    except InvalidNameError:
        raise RepoNotFoundError() from None


def public_base(request: Request, configured: str | None) -> str:
    """The base URL clients use to reach this node (they check URLs against it)."""
    if configured:
        return configured
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"
