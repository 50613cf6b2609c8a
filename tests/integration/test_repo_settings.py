"""Repo settings through the stock client: `update_repo_settings` makes a repo private or
public and gates it; access requests to gated repos (asked, listed, accepted, rejected); a
replica hides a repo made private and enforces its gate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import httpx
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from registry.cli import cli
from tests.conftest import ADMIN_TOKEN, RunningNode


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        time.sleep(0.05)


def feed_repos(node: RunningNode, token: str | None) -> list[tuple[str, str]]:
    """(kind, repo) of every entry of the node's feed the token may read."""
    with node.client(token) as http:
        page = http.get("/v1/sync/changes", params={"since": 0, "limit": 5000}).json()
    return [(e["kind"], e["repo"]) for e in page["entries"]]


def ask_access(node: RunningNode, token: str, repo: str, kind: str = "models") -> httpx.Response:
    with node.client(token) as http:
        return http.post(f"/api/{kind}/{repo}/ask-access")


@contextmanager
def session(node: RunningNode, token: str) -> Iterator[httpx.Client]:
    """A client holding a session cookie, as a browser does after signing in."""
    with httpx.Client(base_url=node.url, timeout=60) as http:
        assert http.post("/signin", data={"token": token, "next": "/"}).status_code == 303
        yield http


def csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
def alice(node: RunningNode, make_token: Callable[..., str]) -> HfApi:
    return HfApi(endpoint=node.url, token=make_token("alice"))


def test_private_hides_the_repo_from_others_and_public_shows_it_again(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str]
) -> None:
    alice.create_repo("alice/secret")
    alice.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id="alice/secret")
    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    anonymous = HfApi(endpoint=node.url, token=False)
    assert bob.repo_exists("alice/secret") and anonymous.repo_exists("alice/secret")

    alice.update_repo_settings("alice/secret", private=True)

    assert alice.model_info("alice/secret").private is True
    assert [m.id for m in anonymous.list_models(author="alice")] == []
    assert [m.id for m in alice.list_models(author="alice")] == ["alice/secret"]
    for other in (bob, anonymous):
        with pytest.raises(RepositoryNotFoundError):
            other.model_info("alice/secret")
        assert other.repo_exists("alice/secret") is False
    # The feed serves the repo's entries only to its readers now, but everyone gets the
    # settings entry: a peer that held the public repo learns it is private.
    assert [k for k, r in feed_repos(node, None) if r == "model/alice/secret"] == ["repo.settings"]
    assert ("commit.add", "model/alice/secret") in feed_repos(node, ADMIN_TOKEN)

    alice.update_repo_settings("alice/secret", private=False)
    assert bob.model_info("alice/secret").private is False
    assert anonymous.repo_exists("alice/secret") is True
    assert ("commit.add", "model/alice/secret") in feed_repos(node, None)


def test_dataset_settings_and_the_visibility_form(node: RunningNode, alice: HfApi) -> None:
    alice.create_repo("alice/data", repo_type="dataset")
    alice.update_repo_settings("alice/data", repo_type="dataset", visibility="private")
    anonymous = HfApi(endpoint=node.url, token=False)
    assert anonymous.repo_exists("alice/data", repo_type="dataset") is False
    assert alice.dataset_info("alice/data").private is True
    alice.update_repo_settings("alice/data", repo_type="dataset", gated="manual", private=False)
    info = anonymous.dataset_info("alice/data")
    assert (info.private, info.gated) == (False, "manual")


def test_bad_settings_and_other_users_are_refused(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str]
) -> None:
    alice.create_repo("alice/strict")
    with node.client(str(alice.token)) as http:
        bad = http.put("/api/models/alice/strict/settings", json={"gated": "sometimes"})
        worse = http.put("/api/models/alice/strict/settings", json={"visibility": "protected"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidSetting"
    assert worse.status_code == 400 and worse.json()["code"] == "InvalidSetting"
    assert alice.model_info("alice/strict").gated is False  # nothing changed

    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    with pytest.raises(HfHubHTTPError) as refused:
        bob.update_repo_settings("alice/strict", private=True)
    assert refused.value.response.status_code == 403
    alice.update_repo_settings("alice/strict", private=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.update_repo_settings("alice/strict", private=False)
    assert alice.model_info("alice/strict").private is True


def test_auto_gate_admits_a_user_once_they_ask(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str], tmp_path: Path
) -> None:
    alice.create_repo("alice/gated")
    alice.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="alice/gated")
    alice.update_repo_settings("alice/gated", gated="auto")
    bob_token = make_token("bob")
    bob = HfApi(endpoint=node.url, token=bob_token)
    anonymous = HfApi(endpoint=node.url, token=False)

    assert bob.model_info("alice/gated").gated == "auto"  # metadata stays visible
    assert [m.gated for m in anonymous.list_models(author="alice")] == ["auto"]
    for who, token in ((bob, bob_token), (anonymous, None)):
        with pytest.raises(GatedRepoError):
            who.hf_hub_download("alice/gated", "w.bin", cache_dir=tmp_path / "refused")
        with node.client(token) as http:
            raw = http.get("/alice/gated/raw/main/w.bin")
        assert raw.status_code == 403 and raw.headers["x-error-code"] == "GatedRepo"
    digest = blake3.blake3(b"weights").hexdigest()
    with node.client(bob_token) as http:  # nor by its hash, nor through Xet
        assert http.get(f"/v1/blobs/{digest}").status_code == 404
        xet = http.get("/api/models/alice/gated/xet-read-token/main")
        assert xet.status_code == 403 and xet.json()["code"] == "GatedRepo"
    owner = alice.hf_hub_download("alice/gated", "w.bin", cache_dir=tmp_path / "owner")
    assert Path(owner).read_bytes() == b"weights"

    assert ask_access(node, "", "alice/gated").status_code == 401  # anonymous cannot ask
    asked = ask_access(node, bob_token, "alice/gated")
    assert asked.status_code == 200 and asked.json()["status"] == "accepted"
    local = bob.hf_hub_download("alice/gated", "w.bin", cache_dir=tmp_path / "bob")
    assert Path(local).read_bytes() == b"weights"
    with node.client(bob_token) as http:
        assert http.get(f"/v1/blobs/{digest}").content == b"weights"
    assert [r.username for r in alice.list_accepted_access_requests("alice/gated")] == ["bob"]

    alice.update_repo_settings("alice/gated", gated=False)
    assert anonymous.model_info("alice/gated").gated is False
    assert (
        Path(
            hf_hub_download("alice/gated", "w.bin", cache_dir=tmp_path / "open", endpoint=node.url)
        ).read_bytes()
        == b"weights"
    )


def test_manual_gate_waits_for_the_owner(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str], tmp_path: Path
) -> None:
    alice.create_repo("alice/manual")
    alice.upload_file(path_or_fileobj=b"m", path_in_repo="m.bin", repo_id="alice/manual")
    alice.update_repo_settings("alice/manual", gated="manual")
    bob_token, carol_token = make_token("bob"), make_token("carol")
    bob = HfApi(endpoint=node.url, token=bob_token)

    assert ask_access(node, bob_token, "alice/manual").json()["status"] == "pending"
    assert ask_access(node, carol_token, "alice/manual").json()["status"] == "pending"
    pending = list(alice.list_pending_access_requests("alice/manual"))
    assert [(r.username, r.status) for r in pending] == [("bob", "pending"), ("carol", "pending")]
    with pytest.raises(GatedRepoError):
        bob.hf_hub_download("alice/manual", "m.bin", cache_dir=tmp_path / "early")
    with pytest.raises(HfHubHTTPError) as refused:  # only its writers list requests
        list(bob.list_pending_access_requests("alice/manual"))
    assert refused.value.response.status_code == 403

    alice.accept_access_request("alice/manual", "bob")
    alice.reject_access_request("alice/manual", "carol", rejection_reason="no")
    local = bob.hf_hub_download("alice/manual", "m.bin", cache_dir=tmp_path / "bob")
    assert Path(local).read_bytes() == b"m"
    assert [r.username for r in alice.list_accepted_access_requests("alice/manual")] == ["bob"]
    assert [r.username for r in alice.list_rejected_access_requests("alice/manual")] == ["carol"]
    assert list(alice.list_pending_access_requests("alice/manual")) == []
    assert ask_access(node, carol_token, "alice/manual").json()["status"] == "rejected"

    alice.cancel_access_request("alice/manual", "bob")  # back to pending: no access
    with pytest.raises(GatedRepoError):
        bob.hf_hub_download("alice/manual", "m.bin", cache_dir=tmp_path / "late")
    alice.grant_access("alice/manual", "dave")
    assert [r.username for r in alice.list_accepted_access_requests("alice/manual")] == ["dave"]
    with pytest.raises(HfHubHTTPError) as unknown:
        alice.accept_access_request("alice/manual", "erin")
    assert unknown.value.response.status_code == 404
    alice.create_repo("alice/open")
    with pytest.raises(HfHubHTTPError) as open_repo:
        alice.grant_access("alice/open", "bob")
    assert open_repo.value.response.status_code == 400


def test_replica_hides_a_repo_made_private_and_enforces_its_gate(
    node: RunningNode,
    alice: HfApi,
    make_token: Callable[..., str],
    start_node: Callable[..., RunningNode],
    tmp_path: Path,
) -> None:
    # The replica reads the home's feed as a user who may read public repos only.
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post(
            "/v1/peers", json={"url": node.url, "token": make_token("peer", write=False)}
        )
    assert added.status_code == 201, added.text
    alice.create_repo("alice/shared")
    alice.upload_file(path_or_fileobj=b"s", path_in_repo="s.bin", repo_id="alice/shared")
    copy = HfApi(endpoint=replica.url, token=False)
    wait_for(lambda: copy.file_exists("alice/shared", "s.bin"), "replicated")

    alice.update_repo_settings("alice/shared", gated="auto")
    wait_for(lambda: copy.model_info("alice/shared").gated == "auto", "gate replicated")
    with pytest.raises(GatedRepoError):
        copy.hf_hub_download("alice/shared", "s.bin", cache_dir=tmp_path / "gated")

    alice.update_repo_settings("alice/shared", private=True)
    wait_for(lambda: not copy.repo_exists("alice/shared"), "hidden on the replica")
    admin = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    assert admin.model_info("alice/shared").private is True  # kept, hidden
    # The replica re-serves the repo's entries only to its readers too: the last settings
    # entry (the whole state: private and gated) still goes to everyone.
    assert [k for k, r in feed_repos(replica, None) if r == "model/alice/shared"] == [
        "repo.settings"
    ]


def test_a_repo_made_private_leaves_its_mirrors_outbox(node: RunningNode, alice: HfApi) -> None:
    # A mirror that cannot be reached: what is to be pushed to it stays in its outbox.
    with node.client(ADMIN_TOKEN) as http:
        added = http.post(
            "/v1/mirrors",
            json={"name": "down", "kind": "hf", "url": "http://127.0.0.1:9", "token": "t"},
        )
        assert added.status_code == 201, added.text

        def backlog() -> int:
            [mirror] = http.get("/v1/mirrors").json()
            return int(mirror["backlog"])

        alice.create_repo("alice/leaving")
        alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/leaving")
        assert backlog() > 0
        alice.update_repo_settings("alice/leaving", private=True)
        assert backlog() == 0
        alice.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id="alice/leaving")
        assert backlog() == 0


def test_access_cli_lists_accepts_and_rejects(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str]
) -> None:
    alice.create_repo("alice/cli")
    alice.update_repo_settings("alice/cli", gated="manual")
    for user in ("bob", "carol"):
        assert ask_access(node, make_token(user), "alice/cli").status_code == 200

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["access", *args, "--node", node.url])

    listed = run("list", "alice/cli", "--token", str(alice.token))
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[:2] for line in listed.output.splitlines()] == [
        ["user", "status"],
        ["bob", "pending"],
        ["carol", "pending"],
    ]
    accepted = run("accept", "alice/cli", "bob", "--token", str(alice.token))
    assert accepted.exit_code == 0 and accepted.output == "accepted\tbob\talice/cli\n"
    assert run("reject", "alice/cli", "carol", "--token", str(alice.token)).exit_code == 0
    after = run("list", "alice/cli", "--status", "accepted", "--token", str(alice.token))
    assert [line.split("\t")[:2] for line in after.output.splitlines()] == [
        ["user", "status"],
        ["bob", "accepted"],
    ]
    assert [r.username for r in alice.list_rejected_access_requests("alice/cli")] == ["carol"]
    refused = run("accept", "alice/cli", "carol", "--token", make_token("bob"))
    assert refused.exit_code != 0 and "Forbidden" in refused.output


def test_repo_page_asks_for_access_and_the_owner_answers(
    node: RunningNode, alice: HfApi, make_token: Callable[..., str]
) -> None:
    alice.create_repo("alice/paged")
    alice.update_repo_settings("alice/paged", gated="manual")
    with node.client() as http:
        shown = http.get("/alice/paged").text
    assert 'id="access"' in shown and "Sign in</a> to request access" in shown

    with session(node, make_token("bob")) as bob:
        page = bob.get("/alice/paged").text
        assert 'id="request-access"' in page and 'id="access-requests"' not in page
        refused = bob.post("/alice/paged/access", data={"action": "ask", "csrf": "guessed"})
        assert refused.status_code == 403
        asked = bob.post("/alice/paged/access", data={"action": "ask", "csrf": csrf(page)})
        assert asked.status_code == 303
        assert "Your request: <b>pending</b>" in bob.get("/alice/paged").text

    with session(node, str(alice.token)) as owner:
        page = owner.get("/alice/paged").text
        assert 'id="access-requests"' in page and "<b>bob</b>" in page
        form = {"action": "accepted", "user": "bob", "csrf": csrf(page)}
        assert owner.post("/alice/paged/access", data=form).status_code == 303
        assert "No pending requests." in owner.get("/alice/paged").text
    assert [r.username for r in alice.list_accepted_access_requests("alice/paged")] == ["bob"]
