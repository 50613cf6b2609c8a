"""Organisations: native `/v1/orgs` (create, list, read, members) and the Hub's member list."""

from __future__ import annotations

from fastapi import APIRouter, Response

from registry.api.deps import OrgsDep, PrincipalDep
from registry.api.errors import documented
from registry.service.orgs import OrgInfo
from registry.wire import HubMemberOut, MemberIn, MemberOut, OrgDetail, OrgIn, OrgSummary

router = APIRouter(tags=["orgs"])


def org_detail(info: OrgInfo) -> OrgDetail:
    return OrgDetail(
        name=info.name, members=[MemberOut(user=m.user, role=m.role) for m in info.members]
    )


@router.post(
    "/v1/orgs", status_code=201, responses=documented(400, 401, 403, 409), response_model=OrgDetail
)
def create_org(body: OrgIn, orgs: OrgsDep, principal: PrincipalDep) -> OrgDetail:
    """Create an org (the node's admin); its name may be no user's."""
    return org_detail(orgs.create(principal, body.name))


@router.get("/v1/orgs", responses=documented(401), response_model=list[OrgSummary])
def list_orgs(orgs: OrgsDep, principal: PrincipalDep) -> list[OrgSummary]:
    """Your orgs with your role (the admin: every org)."""
    return [OrgSummary(name=n, role=principal.role_in(n)) for n in orgs.names(principal)]


@router.get("/v1/orgs/{name}", responses=documented(401, 404), response_model=OrgDetail)
def get_org(name: str, orgs: OrgsDep, principal: PrincipalDep) -> OrgDetail:
    """An org and its members' roles (its members and the admin)."""
    return org_detail(orgs.get(principal, name))


@router.put(
    "/v1/orgs/{name}/members/{user}",
    responses=documented(400, 401, 403, 404),
    response_model=OrgDetail,
)
def put_member(
    name: str, user: str, body: MemberIn, orgs: OrgsDep, principal: PrincipalDep
) -> OrgDetail:
    """Add a user to the org with a role, or change it (org admins and the admin)."""
    return org_detail(orgs.set_member(principal, name, user, body.role))


@router.delete(
    "/v1/orgs/{name}/members/{user}", status_code=204, responses=documented(401, 403, 404)
)
def delete_member(name: str, user: str, orgs: OrgsDep, principal: PrincipalDep) -> Response:
    """Take a user out of the org (org admins and the admin)."""
    orgs.remove_member(principal, name, user)
    return Response(status_code=204)


@router.get(
    "/api/organizations/{name}/members",
    responses=documented(401, 404),
    response_model=list[HubMemberOut],
)
def hub_members(name: str, orgs: OrgsDep, principal: PrincipalDep) -> list[HubMemberOut]:
    """The Hub's `list_organization_members` (for the org's members and the admin)."""
    return [HubMemberOut(user=m.user, fullname=m.user) for m in orgs.get(principal, name).members]
