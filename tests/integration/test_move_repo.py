"""`HfApi.move_repo`: a repo renamed or transferred keeps its history, its old id redirects
to it (as on the Hub), and the move reaches a peer, where later commits follow it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from mirror.s3_target import S3Bucket
from registry.domain.names import qualified_key
from tests.conftest import ADMIN_TOKEN, RunningNode

MOVE_DOCS = "https://hf.co/docs/hub/repositories-settings#renaming-or-transferring-a-repo"


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


def test_rename_keeps_history_and_the_old_id_redirects(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    api.create_repo("admin/before")
    sha = api.upload_file(path_or_fileobj=b"w" * 100, path_in_repo="w.bin", repo_id="admin/before")
    api.create_tag("admin/before", tag="v1")

    api.move_repo(from_id="admin/before", to_id="admin/after")

    info = api.model_info("admin/after")
    assert info.id == "admin/after" and info.sha == sha.oid
    assert [t.name for t in api.list_repo_refs("admin/after").tags] == ["v1"]
    assert sorted(api.list_repo_files("admin/after")) == [".gitattributes", "w.bin"]
    # the old id: every read is redirected to the new one, and the stock client follows
    old = api.model_info("admin/before")
    assert old.id == "admin/after" and old.sha == sha.oid
    assert api.model_info("admin/before", revision="v1").sha == sha.oid
    assert sorted(api.list_repo_files("admin/before")) == [".gitattributes", "w.bin"]
    path = hf_hub_download("admin/before", "w.bin", cache_dir=tmp_path, endpoint=node.url)
    assert Path(path).read_bytes() == b"w" * 100
    with httpx.Client(base_url=node.url) as http:
        answers = {
            "/api/models/admin/before?blobs=true": "/api/models/admin/after?blobs=true",
            "/api/models/admin/before/revision/v1": "/api/models/admin/after/revision/v1",
            "/admin/before/resolve/main/w.bin": "/admin/after/resolve/main/w.bin",
            "/api/models/admin/before/tree/main": "/api/models/admin/after/tree/main",
            "/admin/before": "/admin/after",
        }
        for asked, location in answers.items():
            answer = http.get(asked)
            assert answer.status_code == 307, asked
            assert answer.headers["location"] == location
            assert answer.headers["x-error-code"] == "RepoMoved"
        head = http.head("/admin/before/resolve/main/w.bin")
        assert head.status_code == 307
        assert head.headers["location"] == "/admin/after/resolve/main/w.bin"
    # writes naming the old id are redirected too (307 keeps the method and the body)
    late = api.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id="admin/before")
    assert api.model_info("admin/after").sha == late.oid


def test_transfer_to_another_namespace_the_admin_may_write(
    api: HfApi, make_token: Callable[..., str], node: RunningNode
) -> None:
    api.create_repo("admin/gift", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"x,y\n", path_in_repo="d.csv", repo_id="admin/gift", repo_type="dataset"
    )
    api.move_repo(from_id="admin/gift", to_id="alice/gift", repo_type="dataset")

    alice = HfApi(endpoint=node.url, token=make_token("alice"))
    info = alice.dataset_info("alice/gift")
    assert info.id == "alice/gift"
    assert alice.dataset_info("admin/gift").id == "alice/gift"  # redirected
    alice.upload_file(  # the new owner writes to it
        path_or_fileobj=b"1,2\n", path_in_repo="e.csv", repo_id="alice/gift", repo_type="dataset"
    )
    assert "e.csv" in alice.list_repo_files("alice/gift", repo_type="dataset")
    assert [r.id for r in api.list_datasets(author="alice")] == ["alice/gift"]


def test_moving_onto_an_existing_repo_is_409_with_the_hubs_message(api: HfApi) -> None:
    api.create_repo("admin/one")
    api.create_repo("admin/two")
    with pytest.raises(HfHubHTTPError, match=r"A model repository called .* already exists"):
        api.move_repo(from_id="admin/one", to_id="admin/two")
    with pytest.raises(HfHubHTTPError) as raised:
        api.move_repo(from_id="admin/one", to_id="ADMIN/Two")  # ids match whatever their case
    response = raised.value.response
    assert response.status_code == 409
    assert response.json()["code"] == "RepoExists"
    assert raised.value.server_message == "A model repository called ADMIN/Two already exists"
    assert MOVE_DOCS in str(raised.value)
    assert api.model_info("admin/one").id == "admin/one"  # nothing changed


def test_missing_source_bad_target_and_no_permission(
    api: HfApi, make_token: Callable[..., str], node: RunningNode
) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.move_repo(from_id="admin/nothing", to_id="admin/other")
    api.create_repo("admin/kept")
    with pytest.raises(HfHubHTTPError) as raised:
        api.move_repo(from_id="admin/kept", to_id="admin/bad--name")
    assert raised.value.response.status_code == 400
    assert raised.value.response.json()["code"] == "InvalidName"

    alice = HfApi(endpoint=node.url, token=make_token("alice"))
    with pytest.raises(HfHubHTTPError) as refused:  # she may read it, not write its namespace
        alice.move_repo(from_id="admin/kept", to_id="alice/kept")
    assert refused.value.response.status_code == 403
    alice.create_repo("alice/mine")
    with pytest.raises(HfHubHTTPError) as elsewhere:  # her repo, into a namespace not hers
        alice.move_repo(from_id="alice/mine", to_id="bob/mine")
    assert elsewhere.value.response.status_code == 403
    reader = HfApi(endpoint=node.url, token=make_token("alice", write=False))
    with pytest.raises(HfHubHTTPError) as read_only:
        reader.move_repo(from_id="alice/mine", to_id="alice/renamed")
    assert read_only.value.response.status_code == 403
    assert api.model_info("admin/kept").id == "admin/kept"
    assert alice.model_info("alice/mine").id == "alice/mine"


def test_a_private_repos_old_id_redirects_only_for_who_may_read_it(
    api: HfApi, node: RunningNode
) -> None:
    api.create_repo("admin/hidden", private=True)
    api.move_repo(from_id="admin/hidden", to_id="admin/hidden2")
    assert api.model_info("admin/hidden").id == "admin/hidden2"
    with httpx.Client(base_url=node.url) as http:
        answer = http.get("/api/models/admin/hidden")
    assert answer.status_code == 404 and answer.headers["x-error-code"] == "RepoNotFound"


def test_a_repo_created_at_the_old_id_ends_the_redirect(api: HfApi) -> None:
    api.create_repo("admin/reused")
    moved = api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="admin/reused")
    api.move_repo(from_id="admin/reused", to_id="admin/reused-v2")
    api.create_repo("admin/reused")
    fresh = api.model_info("admin/reused")
    assert fresh.id == "admin/reused" and fresh.sha != moved.oid
    assert api.list_repo_files("admin/reused") == [".gitattributes"]
    assert api.model_info("admin/reused-v2").sha == moved.oid
    # and moving back onto a name that only redirects is allowed
    api.delete_repo("admin/reused")
    api.move_repo(from_id="admin/reused-v2", to_id="admin/reused")
    assert api.model_info("admin/reused").sha == moved.oid
    assert api.model_info("admin/reused-v2").id == "admin/reused"


def test_the_search_index_follows_the_move(api: HfApi, node: RunningNode) -> None:
    api.create_repo("admin/findme")
    api.move_repo(from_id="admin/findme", to_id="admin/foundit")
    while node.runtime.indexer.run_once():
        pass
    assert [m.id for m in api.list_models(search="foundit")] == ["admin/foundit"]
    assert [m.id for m in api.list_models(search="findme")] == []


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_the_move_replicates_and_later_commits_follow_it(
    node: RunningNode, start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/travels")
    first = home.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="admin/travels")
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN})
    assert added.status_code == 201, added.text
    copy = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    wait_for(lambda: copy.repo_exists("admin/travels"))
    wait_for(lambda: copy.model_info("admin/travels").sha == first.oid)

    home.move_repo(from_id="admin/travels", to_id="admin/arrived")
    second = home.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id="admin/arrived")

    wait_for(lambda: copy.repo_exists("admin/arrived"))
    wait_for(lambda: copy.model_info("admin/arrived").sha == second.oid)
    assert sorted(copy.list_repo_files("admin/arrived")) == [".gitattributes", "a.txt", "b.txt"]
    assert copy.model_info("admin/travels").id == "admin/arrived"  # redirected there too
    path = hf_hub_download("admin/travels", "b.txt", cache_dir=tmp_path, endpoint=replica.url)
    assert Path(path).read_bytes() == b"2"
    with pytest.raises(HfHubHTTPError, match="home is node"):  # still a replica
        copy.move_repo(from_id="admin/arrived", to_id="admin/elsewhere")


def test_mirrors_keep_the_old_name_and_get_later_commits_under_the_new_one(
    start_node: Callable[..., RunningNode], s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = start_node("hub")
    node = start_node("home", mirror={"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.5})
    with node.client(ADMIN_TOKEN) as http:
        for mirror in (
            {"name": "bucket", "kind": "s3", "url": f"s3://{s3_bucket}/models"},
            {"name": "hub", "kind": "hf", "url": hub.url, "token": hub.admin_token},
        ):
            assert http.post("/v1/mirrors", json=mirror).status_code == 201

    def pushed() -> bool:
        with node.client(ADMIN_TOKEN) as http:
            mirrors = http.get("/v1/mirrors").json()
        return all(m["backlog"] == 0 and m["state"] == "ok" for m in mirrors)

    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/mirrored")
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="admin/mirrored")
    wait_for(pushed)
    with caplog.at_level(logging.WARNING, logger="registry.service.repos"):
        api.move_repo(from_id="admin/mirrored", to_id="admin/renamed")
    assert "mirrors=bucket,hub keep it under its old name" in caplog.text
    second = api.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id="admin/renamed")
    wait_for(pushed)

    theirs = HfApi(endpoint=hub.url, token=hub.admin_token)
    assert sorted(theirs.list_repo_files("admin/renamed")) == [".gitattributes", "a.txt", "b.txt"]
    assert sorted(theirs.list_repo_files("admin/mirrored")) == [".gitattributes", "a.txt"]
    bucket = S3Bucket(f"s3://{s3_bucket}/models")
    assert bucket.resolve("model", "admin/renamed", "main").commit == second.oid
    assert {f.path for f in bucket.resolve("model", "admin/renamed", "main").files} == {
        ".gitattributes",
        "a.txt",
        "b.txt",
    }
    assert bucket.resolve("model", "admin/mirrored", "main").commit == first.oid
    with node.client(ADMIN_TOKEN) as http:  # each mirror says it kept the old name
        mirrors = http.get("/v1/mirrors").json()
    for mirror in mirrors:
        assert [(m["repo"], m["repo_type"], m["to"]) for m in mirror["moved_repos"]] == [
            ("admin/mirrored", "model", "admin/renamed")
        ]


def test_a_move_onto_an_id_a_peer_holds_for_itself_lands_under_the_qualified_id(
    node: RunningNode, start_node: Callable[..., RunningNode]
) -> None:
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    copy = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    copy.create_repo("admin/taken")  # the replica's own repo of the id the home moves to
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/wanders")
    with replica.client(ADMIN_TOKEN) as http:
        assert http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN}).is_success
    with node.client() as http:
        home_id = http.get("/v1/health").json()["node_id"]
    qualified = qualified_key("model/admin/taken", home_id).split("/", 1)[1]
    wait_for(lambda: copy.repo_exists("admin/wanders"))

    home.move_repo(from_id="admin/wanders", to_id="admin/taken")
    later = home.upload_file(path_or_fileobj=b"3", path_in_repo="c.txt", repo_id="admin/taken")

    wait_for(lambda: copy.repo_exists(qualified))
    wait_for(lambda: copy.model_info(qualified).sha == later.oid)
    assert copy.model_info("admin/wanders").id == qualified  # the old id redirects there
    assert copy.list_repo_files("admin/taken") == [".gitattributes"]  # its own, untouched
