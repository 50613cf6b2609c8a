"""Access tokens (`/v1/tokens`): a user lists and revokes their own, the admin everyone's."""

from __future__ import annotations

from fastapi import APIRouter, Response

from registry.api.deps import AuthDep, PrincipalDep
from registry.api.errors import documented
from registry.domain.clock import now_ms
from registry.domain.tokens import TokenInfo
from registry.wire import TokenOut, iso_ms

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def token_out(info: TokenInfo, now: int) -> TokenOut:
    return TokenOut(
        id=info.id,
        label=info.label,
        user=info.user,
        rights=info.rights,
        created=iso_ms(info.created_ms),
        expires=iso_ms(info.expires_ms) if info.expires_ms is not None else None,
        expired=info.expired(now),
        last_used=iso_ms(info.last_used_ms) if info.last_used_ms is not None else None,
    )


@router.get("", responses=documented(401, 403), response_model=list[TokenOut])
def list_tokens(auth: AuthDep, principal: PrincipalDep, user: str | None = None) -> list[TokenOut]:
    """Your tokens not revoked (the admin: everyone's, or `user`'s)."""
    now = now_ms()
    return [token_out(info, now) for info in auth.tokens(principal, user)]


@router.delete("/{token_id}", status_code=204, responses=documented(401, 404))
def revoke_token(token_id: int, auth: AuthDep, principal: PrincipalDep) -> Response:
    """Revoke a token of yours (the admin: anyone's); it is answered 401 TokenRevoked after."""
    auth.revoke(principal, token_id)
    return Response(status_code=204)
