"""Who is looking at a page: a browser signed in with a token, or anyone.

Theory of operation: signing in (`POST /signin`, registry/api/routes/page_forms.py) checks a
token and sets it as the `modelyard_session` cookie: HttpOnly (no script reads it), SameSite=Lax
(no other site's form or fetch sends it with a POST) and Secure when the node's public URL is
https. Only page routes read the cookie; the API takes `Authorization: Bearer` alone, so a
cookie can never act on the API. Every form carries a CSRF token derived from the session's
token (an HMAC no other site can compute) and a POST must also come from this node's own
origin when the browser names one (`Origin`, else `Referer`).

A cookie whose token was revoked is treated as signed out, never as an error page.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from registry.api.deps import bearer_token
from registry.domain.access import ANONYMOUS, Principal
from registry.domain.errors import UnauthorizedError
from registry.service.auth import AuthService

COOKIE = "modelyard_session"


def session_token(request: Request) -> str | None:
    """The token a page request carries: a bearer header, else the session cookie."""
    return bearer_token(request.scope) or request.cookies.get(COOKIE) or None


def csrf_token(token: str | None) -> str:
    """The CSRF token of a session ("" when signed out)."""
    if not token:
        return ""
    return hmac.new(token.encode(), b"modelyard-csrf/1", hashlib.sha256).hexdigest()


async def get_viewer(request: Request) -> Principal:
    """The principal of a page request; a stale cookie reads as signed out."""
    auth: AuthService = request.app.state.services.auth
    try:
        return auth.authenticate(session_token(request))
    except UnauthorizedError:
        return ANONYMOUS


ViewerDep = Annotated[Principal, Depends(get_viewer)]
