"""The org rules of `registry.domain.access`: read members read, write members write, admins
manage; the node's admin does everything; outsiders nothing private."""

from __future__ import annotations

import pytest

from registry.domain.access import (
    Membership,
    Principal,
    may_manage_org,
    may_read,
    may_write,
    may_write_namespace,
    parse_role,
    passes_gate,
    require_write,
)
from registry.domain.errors import ForbiddenError, InvalidError


def member(role: str | None) -> Principal:
    orgs = (Membership("lab", role),) if role else ()
    return Principal("u", can_write=True, orgs=orgs)


@pytest.mark.parametrize(
    ("role", "reads", "writes", "manages"),
    [
        (None, False, False, False),
        ("read", True, False, False),
        ("write", True, True, False),
        ("admin", True, True, True),
    ],
)
def test_org_role_gives_its_rights(
    role: str | None, reads: bool, writes: bool, manages: bool
) -> None:
    who = member(role)
    assert may_read(who, private=True, namespace="lab") is reads
    assert may_write_namespace(who, "lab") is writes
    assert may_manage_org(who, "lab") is manages
    assert may_read(who, private=False, namespace="lab")
    assert not may_write_namespace(who, "other")


def test_org_rules_for_the_node_admin_and_read_only_tokens() -> None:
    admin = Principal("admin", is_admin=True, can_write=True)
    assert may_manage_org(admin, "lab") and may_write_namespace(admin, "lab")
    read_only = Principal("u", orgs=(Membership("lab", "admin"),))
    with pytest.raises(ForbiddenError, match="read-only"):
        require_write(read_only, "lab")
    assert parse_role("write") == "write"
    with pytest.raises(InvalidError, match="read, write, admin"):
        parse_role("owner")


@pytest.mark.parametrize(("role", "passes"), [(None, False), ("read", False), ("write", True)])
def test_org_writers_pass_their_orgs_gates_and_write(role: str | None, passes: bool) -> None:
    principal = member(role)
    assert passes_gate(principal, gated="manual", namespace="lab", accepted=False) is passes
    assert may_write(principal, "lab") is passes
    assert passes_gate(principal, gated="manual", namespace="lab", accepted=True)
    assert principal.writable_namespaces() == (["u", "lab"] if passes else ["u"])
