"""Rate limits on writes and expensive reads, per bearer token and per client address.

Theory of operation: each request falls in a class by method and path. `writes` are POST, PUT,
PATCH and DELETE (uploads, commits, repo and ref changes); `reads` are the expensive reads:
search, repo listings, trees, commit histories, paths-info (a POST that only reads), hash
lookups, lineage and the change feed. Every other request (repo info, downloads and blobs,
refs, manifests, health, metrics, status) is never limited, so monitoring, downloads and peers
fetching blobs always work. A limited request spends one unit of its class's budget for its
client address and, when it carries a bearer token, one of that token's (keyed by the token's
SHA-256, never the token). The admin and the users in `exempt_users` spend nothing. Budgets are
fixed windows counted in this process's memory (the `limits` package): each process of a node
has its own. A refusal is a 429 naming the limit, with `Retry-After` and the IETF `RateLimit`
headers (which the huggingface_hub client reads and waits for).
"""

from __future__ import annotations

import math
import re
import time

from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.deps import bearer_token, services_of
from registry.api.errors import error_response
from registry.domain.access import Principal
from registry.domain.errors import RegistryError
from registry.domain.tokens import hash_token
from registry.metrics import LIMIT_HEADER
from registry.settings import LimitSettings

RATE_LIMITED = "RateLimited"
_REPO = r"api/(?:models|datasets|spaces)"
_EXPENSIVE = re.compile(
    rf"/(?:v1/search/?|v1/sync/changes|v1/files/by-hash/.+|v1/repos/[^/]+/[^/]+/[^/]+/lineage"
    rf"|{_REPO}/?|{_REPO}/[^/]+/[^/]+/(?:tree|commits|paths-info)(?:/.*)?)"
)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TOKEN = re.compile(r"[\x21-\x7e]{8,512}")  # printable, of a plausible length
_WHAT = {
    "writes": "writes",
    "reads": "expensive reads (search, listings, trees, commit histories, the change feed)",
}


def request_class(method: str, path: str) -> str | None:
    """`writes`, `reads` (an expensive one) or None (never limited)."""
    if method in ("GET", "POST") and _EXPENSIVE.fullmatch(path):
        return "reads"
    return "writes" if method in _WRITES else None


def plausible_token(scope: Scope) -> str | None:
    """The request's bearer token if it looks like one (else the address alone counts)."""
    token = bearer_token(scope)
    return token if token is not None and _TOKEN.fullmatch(token) else None


class RateLimit:
    def __init__(self, app: ASGIApp, limits: LimitSettings) -> None:
        self.app = app
        self.exempt_users = frozenset(limits.exempt_users)
        rates = {
            "writes_per_token": limits.writes_per_token,
            "writes_per_address": limits.writes_per_address,
            "reads_per_token": limits.reads_per_token,
            "reads_per_address": limits.reads_per_address,
        }
        self.items: dict[str, RateLimitItem] = {
            name: parse(rate) for name, rate in rates.items() if rate
        }
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = request_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        refusal = await self._check(scope, kind) if kind else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    async def _check(self, scope: Scope, kind: str) -> JSONResponse | None:
        token = plausible_token(scope)
        if token is not None and await self._exempt(scope, token):
            return None
        client = scope.get("client")
        address = client[0] if client else "unknown"
        budgets = [("address", address)]
        if token is not None:
            budgets.append(("token", hash_token(token)))
        for by, key in budgets:
            name = f"{kind}_per_{by}"
            item = self.items.get(name)
            if item is not None and not self.limiter.hit(item, name, key):
                source = "with this token" if by == "token" else f"from address {address}"
                return self._refusal(name, item, key, f"Too many {_WHAT[kind]} {source}")
        return None

    async def _exempt(self, scope: Scope, token: str) -> bool:
        principal = await _principal(scope, token)
        return principal is not None and (principal.is_admin or principal.user in self.exempt_users)

    def _refusal(self, name: str, item: RateLimitItem, key: str, what: str) -> JSONResponse:
        reset = self.limiter.get_window_stats(item, name, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        policy = f'"fixed window";"{name}";q={item.amount};w={item.get_expiry()}'
        return error_response(
            429,
            RATE_LIMITED,
            f"{what}: at most {item} (limit {name}: MODELYARD_LIMITS__{name.upper()}); "
            f"retry in {wait} s",
            {"limit": name, "rate": str(item), "retry_after": wait},
            headers={
                "Retry-After": str(wait),
                LIMIT_HEADER: name,
                "RateLimit": f'"{name}";r=0;t={wait}',
                "RateLimit-Policy": policy,
            },
        )


async def _principal(scope: Scope, token: str) -> Principal | None:
    """Whom a token stands for (a lookup once, then cached); None if unknown or not started."""
    services = services_of(scope)
    if services is None:
        return None
    principal = services.auth.cached(token)
    if principal is not None:
        return principal
    try:
        return await run_in_threadpool(services.auth.authenticate, token)
    except RegistryError:  # an unknown token: the route itself answers 401
        return None
