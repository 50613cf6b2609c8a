"""CAS access tokens and xorb fetch signatures.

The Hub-side token routes hand a client an access token for the node's CAS, scoped to one
repo, read or write, and short-lived; only this node reads it back. Xorb byte fetches carry no
token (the client sends none): their URLs sign themselves.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from registry.domain.access import Membership, Principal
from registry.domain.errors import UnauthorizedError
from registry.domain.names import RepoId, RepoType
from registry.domain.tokens import sign, verify_signature

PREFIX = "xet1"
SKEW = 60  # seconds a token is still taken after it expired (clocks differ a little)


@dataclass(frozen=True)
class CasGrant:
    """What a CAS access token allows: reading (and with `write`, uploading to) one repo."""

    repo: RepoId
    user: str | None
    is_admin: bool
    write: bool
    expires: int  # Unix seconds
    nonce: str = ""  # tells apart tokens issued alike in the same second (none in older ones)
    orgs: tuple[Membership, ...] = ()  # the user's org memberships when it was issued
    pull_request: bool = False  # an upload for a PR by a user who cannot write the repo

    @property
    def principal(self) -> Principal:
        return Principal(self.user, is_admin=self.is_admin, can_write=self.write, orgs=self.orgs)


def issue(secret: str, grant: CasGrant) -> str:
    fields = [
        grant.repo.type.value,
        grant.repo.namespace,
        grant.repo.name,
        grant.user,
        grant.is_admin,
        grant.write,
        grant.expires,
        grant.nonce,
        [[m.org, m.role] for m in grant.orgs],
        grant.pull_request,
    ]
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    return f"{PREFIX}.{payload}.{sign(secret, PREFIX, payload)}"


def open_token(secret: str, token: str, now: float) -> CasGrant:
    """The grant a token carries.

    Raises:
        UnauthorizedError: not a token of this node, or expired.
    """
    refused = UnauthorizedError(
        "The Xet access token is invalid or expired: ask the xet-read-token or "
        "xet-write-token route for a new one"
    )
    prefix, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if prefix != PREFIX or not verify_signature(secret, signature, PREFIX, payload):
        raise refused
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    kind, namespace, name, user, is_admin, write, expires = fields[:7]
    nonce = fields[7] if len(fields) > 7 else ""  # issued before nonces were
    orgs = tuple(Membership(org, role) for org, role in (fields[8] if len(fields) > 8 else ()))
    pull_request = bool(fields[9]) if len(fields) > 9 else False
    if expires + SKEW < now:
        raise refused
    repo = RepoId(RepoType(kind), namespace, name)
    return CasGrant(repo, user, is_admin, write, expires, nonce, orgs, pull_request)


def fetch_signature(secret: str, xorb: str, expires: int) -> str:
    """The signature of a xorb fetch URL valid until `expires` (Unix seconds)."""
    return sign(secret, "xet-fetch", xorb, str(expires))


def fetch_allowed(secret: str, xorb: str, expires: str, signature: str, now: float) -> bool:
    return (
        expires.isdigit()
        and int(expires) >= now
        and verify_signature(secret, signature, "xet-fetch", xorb, expires)
    )
