"""Organisations: shared namespaces whose members read and write by role, through the stock
`HfApi` (whoami, create_repo, upload, download, member list), `/v1/orgs` and `modelyard org`,
against a running node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from registry.cli import cli
from registry.domain.access import CONSOLE
from tests.conftest import ADMIN_TOKEN, RunningNode


def run_cli(node: RunningNode, *args: str) -> Result:
    env = {"MODELYARD_DATABASE_URL": node.settings.database_url or None}
    return CliRunner().invoke(cli, [*args, "--data-dir", str(node.settings.data_dir)], env=env)


def code_of(answer: httpx.Response) -> str:
    return str(answer.headers.get("x-registry-error", ""))


USERS = ("alice", "wendy", "rita", "ozzy")
MEMBERS = (("alice", "admin"), ("wendy", "write"), ("rita", "read"))


@pytest.fixture
def team(node: RunningNode, make_token: Callable[..., str]) -> dict[str, str]:
    """Org `lab` with alice (admin), wendy (write) and rita (read); ozzy is no member.
    Their tokens, by name, all with write rights."""
    tokens = {user: make_token(user) for user in USERS}
    node.runtime.orgs.create(CONSOLE, "lab")  # what `modelyard org` calls (tested below)
    for user, role in MEMBERS:
        node.runtime.orgs.set_member(CONSOLE, "lab", user, role)
    return tokens


def test_whoami_lists_orgs_with_roles(node: RunningNode, team: dict[str, str]) -> None:
    who = HfApi(endpoint=node.url, token=team["wendy"]).whoami()
    assert who["name"] == "wendy"
    assert who["orgs"] == [{"type": "org", "name": "lab", "fullname": "lab", "roleInOrg": "write"}]
    assert HfApi(endpoint=node.url, token=team["ozzy"]).whoami()["orgs"] == []


def test_org_writer_creates_and_uploads_to_org_repo(
    node: RunningNode, team: dict[str, str]
) -> None:
    wendy = HfApi(endpoint=node.url, token=team["wendy"])
    url = wendy.create_repo("lab/model", private=True)
    assert url.repo_id == "lab/model"
    info = wendy.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="lab/model")
    assert len(info.oid) == 40
    assert wendy.model_info("lab/model").sha == info.oid

    rita = HfApi(endpoint=node.url, token=team["rita"])  # a read member
    assert rita.model_info("lab/model").private is True
    path = rita.hf_hub_download("lab/model", "w.bin", cache_dir=str(node.settings.data_dir / "c"))
    assert Path(path).read_bytes() == b"weights"
    assert [m.id for m in rita.list_models(author="lab")] == ["lab/model"]
    with pytest.raises(HfHubHTTPError) as refused:
        rita.upload_file(path_or_fileobj=b"x", path_in_repo="x.bin", repo_id="lab/model")
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as refused:
        rita.create_repo("lab/other")
    assert refused.value.response.status_code == 403

    ozzy = HfApi(endpoint=node.url, token=team["ozzy"])
    with pytest.raises(RepositoryNotFoundError):
        ozzy.model_info("lab/model")
    assert list(ozzy.list_models(author="lab")) == []
    with pytest.raises(HfHubHTTPError) as refused:
        ozzy.create_repo("lab/mine")
    assert refused.value.response.status_code == 403


def test_removed_member_loses_access(node: RunningNode, team: dict[str, str]) -> None:
    HfApi(endpoint=node.url, token=team["wendy"]).create_repo("lab/secret", private=True)
    rita = HfApi(endpoint=node.url, token=team["rita"])
    assert rita.model_info("lab/secret").id == "lab/secret"
    with node.client(team["alice"]) as http:  # an org admin manages members
        assert http.delete("/v1/orgs/lab/members/rita").status_code == 204
    with pytest.raises(RepositoryNotFoundError):
        rita.model_info("lab/secret")
    assert rita.whoami()["orgs"] == []


def test_member_list_over_hub_and_native_routes(node: RunningNode, team: dict[str, str]) -> None:
    rita = HfApi(endpoint=node.url, token=team["rita"])
    assert [u.username for u in rita.list_organization_members("lab")] == [
        "alice",
        "rita",
        "wendy",
    ]
    with pytest.raises(HfHubHTTPError) as missing:
        list(HfApi(endpoint=node.url, token=team["ozzy"]).list_organization_members("lab"))
    assert missing.value.response.status_code == 404
    with node.client(team["rita"]) as http:
        assert http.get("/v1/orgs").json() == [{"name": "lab", "role": "read"}]
        detail = http.get("/v1/orgs/lab").json()
    assert detail["members"] == [
        {"user": "alice", "role": "admin"},
        {"user": "rita", "role": "read"},
        {"user": "wendy", "role": "write"},
    ]


def test_org_http_errors(node: RunningNode, team: dict[str, str]) -> None:
    with node.client(ADMIN_TOKEN) as admin:
        taken = admin.post("/v1/orgs", json={"name": "alice"})
        assert (taken.status_code, code_of(taken)) == (409, "NameTaken")
        again = admin.post("/v1/orgs", json={"name": "lab"})
        assert (again.status_code, code_of(again)) == (409, "NameTaken")
        bad = admin.post("/v1/orgs", json={"name": "no/slash"})
        assert (bad.status_code, code_of(bad)) == (400, "InvalidName")
        role = admin.put("/v1/orgs/lab/members/rita", json={"role": "owner"})
        assert (role.status_code, code_of(role)) == (400, "BadRequest")
        nobody = admin.put("/v1/orgs/lab/members/nobody", json={"role": "read"})
        assert (nobody.status_code, code_of(nobody)) == (404, "UserNotFound")
        no_org = admin.put("/v1/orgs/nolab/members/rita", json={"role": "read"})
        assert (no_org.status_code, code_of(no_org)) == (404, "OrgNotFound")
        created = admin.post("/v1/orgs", json={"name": "lab2"})
        assert created.status_code == 201
        assert created.json() == {"name": "lab2", "members": []}
        assert [o["name"] for o in admin.get("/v1/orgs").json()] == ["lab", "lab2"]
    with node.client(team["wendy"]) as wendy:
        not_admin = wendy.put("/v1/orgs/lab/members/ozzy", json={"role": "write"})
        assert (not_admin.status_code, code_of(not_admin)) == (403, "Forbidden")
        create = wendy.post("/v1/orgs", json={"name": "mine"})
        assert create.status_code == 403
    with node.client(team["ozzy"]) as ozzy:
        hidden = ozzy.get("/v1/orgs/lab")
        assert (hidden.status_code, code_of(hidden)) == (404, "OrgNotFound")
    with node.client() as anonymous:
        assert anonymous.get("/v1/orgs").status_code == 401
    with node.client(ADMIN_TOKEN) as admin:  # nothing the refusals touched changed
        assert len(admin.get("/v1/orgs/lab").json()["members"]) == 3


def test_org_admin_adds_a_writer(node: RunningNode, team: dict[str, str]) -> None:
    with node.client(team["alice"]) as alice:
        added = alice.put("/v1/orgs/lab/members/ozzy", json={"role": "write"})
    assert added.status_code == 200
    assert {"user": "ozzy", "role": "write"} in added.json()["members"]
    ozzy = HfApi(endpoint=node.url, token=team["ozzy"])
    assert ozzy.create_repo("lab/by-ozzy").repo_id == "lab/by-ozzy"


def test_org_cli_errors_and_listing(node: RunningNode, make_token: Callable[..., str]) -> None:
    for user in USERS:
        make_token(user)
    assert run_cli(node, "org", "create", "lab").exit_code == 0
    for user, role in MEMBERS:
        added = run_cli(node, "org", "add", "lab", user, "--role", role)
        assert added.exit_code == 0, added.output
    unknown_user = run_cli(node, "org", "add", "lab", "nobody", "--role", "write")
    assert unknown_user.exit_code == 3
    assert "UserNotFound" in unknown_user.stderr and "'nobody'" in unknown_user.stderr
    unknown_org = run_cli(node, "org", "show", "nolab")
    assert unknown_org.exit_code == 3
    assert "OrgNotFound" in unknown_org.stderr and "'nolab'" in unknown_org.stderr
    clash = run_cli(node, "org", "create", "rita")
    assert clash.exit_code == 4 and "NameTaken" in clash.stderr
    not_member = run_cli(node, "org", "remove", "lab", "ozzy")
    assert not_member.exit_code == 3 and "not a member" in not_member.stderr
    bad_role = run_cli(node, "org", "add", "lab", "ozzy", "--role", "owner")
    assert bad_role.exit_code == 2

    shown = run_cli(node, "org", "show", "lab")
    assert shown.exit_code == 0
    assert shown.stdout.splitlines() == ["org\tlab", "admin\talice", "read\trita", "write\twendy"]
    assert run_cli(node, "org", "list").stdout.splitlines() == ["lab"]
    assert run_cli(node, "org", "remove", "lab", "rita").exit_code == 0
    assert "rita" not in run_cli(node, "org", "show", "lab").stdout


@pytest.mark.usefixtures("team")
def test_token_for_org_name_is_refused(node: RunningNode) -> None:
    made = run_cli(node, "token", "create", "--user", "lab")
    assert made.exit_code == 4 and "NameTaken" in made.stderr
