"""CAS access tokens and signed xorb fetch URLs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from registry.domain.access import Membership, may_read, may_write_namespace
from registry.domain.errors import UnauthorizedError
from registry.domain.names import RepoId, RepoType
from registry.domain.tokens import sign
from registry.domain.xet.grant import (
    SKEW,
    CasGrant,
    fetch_allowed,
    fetch_signature,
    issue,
    open_token,
)

SECRET = "node-secret"
REPO = RepoId(RepoType.MODEL, "alice", "my.lora-v1.2")


def test_a_token_round_trips_its_grant() -> None:
    grant = CasGrant(REPO, "alice", False, True, 2_000_000_000)
    assert open_token(SECRET, issue(SECRET, grant), 1_999_999_999) == grant
    assert grant.principal.can_write and grant.principal.user == "alice"


def test_a_grant_carries_the_org_memberships_it_was_issued_with() -> None:
    lab = RepoId(RepoType.MODEL, "lab", "x")
    grant = CasGrant(lab, "wendy", False, True, 2_000_000_000, "n", (Membership("lab", "write"),))
    principal = open_token(SECRET, issue(SECRET, grant), 0).principal
    assert principal.orgs == (Membership("lab", "write"),)
    assert may_write_namespace(principal, "lab") and may_read(
        principal, private=True, namespace="lab"
    )
    assert not may_write_namespace(replace(principal, orgs=()), "lab")


def test_a_nonce_round_trips_and_a_token_issued_before_nonces_opens_without_one() -> None:
    grant = CasGrant(REPO, "alice", False, True, 2_000_000_000, "0123abcd")
    assert open_token(SECRET, issue(SECRET, grant), 0).nonce == "0123abcd"
    fields = [REPO.type.value, REPO.namespace, REPO.name, "alice", False, True, 2_000_000_000]
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    older = f"xet1.{payload}.{sign(SECRET, 'xet1', payload)}"
    assert open_token(SECRET, older, 0) == replace(grant, nonce="")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("xet1.", "xet2.", 1),
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # signature
        lambda t: t.split(".")[0] + "." + t.split(".")[1][::-1] + "." + t.split(".")[2],
        lambda _: "",
        lambda _: "myd_some_user_token",
    ],
)
def test_a_tampered_token_is_refused(tamper: Callable[[str], str]) -> None:
    token = issue(SECRET, CasGrant(REPO, "alice", False, False, 2_000_000_000))
    with pytest.raises(UnauthorizedError):
        open_token(SECRET, tamper(token), 0)


def test_another_nodes_token_and_an_expired_one_are_refused() -> None:
    grant = CasGrant(REPO, None, False, False, 1000)
    with pytest.raises(UnauthorizedError):
        open_token("another-secret", issue(SECRET, grant), 0)
    assert open_token(SECRET, issue(SECRET, grant), 1000 + SKEW) == grant  # clock skew
    with pytest.raises(UnauthorizedError):
        open_token(SECRET, issue(SECRET, grant), 1001 + SKEW)


def test_fetch_urls_sign_the_xorb_and_expiry() -> None:
    xorb = "ab" * 32
    sig = fetch_signature(SECRET, xorb, 5000)
    assert fetch_allowed(SECRET, xorb, "5000", sig, 4999)
    assert not fetch_allowed(SECRET, xorb, "5000", sig, 5001)  # expired
    assert not fetch_allowed(SECRET, "cd" * 32, "5000", sig, 0)  # another xorb
    assert not fetch_allowed(SECRET, xorb, "6000", sig, 0)  # a longer life
    assert not fetch_allowed(SECRET, xorb, "-1", sig, 0)
