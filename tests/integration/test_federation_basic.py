"""Two nodes in one process: B pulls A's feed; what is uploaded on A is served by B."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(params=["eager"])
def replica(
    request: pytest.FixtureRequest, node: RunningNode, start_node: Callable[..., RunningNode]
) -> RunningNode:
    running = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with running.client(ADMIN_TOKEN) as http:
        added = http.post(
            "/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN, "blobs": request.param}
        )
    assert added.status_code == 201, added.text
    return running


def test_upload_on_home_is_served_by_replica(
    node: RunningNode, replica: RunningNode, tmp_path: Path
) -> None:
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/shared")
    sha = home.upload_file(
        path_or_fileobj=b"w" * 200_000, path_in_repo="w.safetensors", repo_id="admin/shared"
    ).oid
    mirror = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)

    def replicated() -> bool:
        return mirror.repo_exists("admin/shared") and mirror.model_info("admin/shared").sha == sha

    wait_for(replicated)
    local = hf_hub_download(
        "admin/shared", "w.safetensors", cache_dir=tmp_path / "c", endpoint=replica.url
    )
    assert Path(local).read_bytes() == b"w" * 200_000
    with replica.client(ADMIN_TOKEN) as http:
        peers = http.get("/v1/peers").json()
    with node.client() as http:
        home_id = http.get("/v1/health").json()["node_id"]
        own = http.get("/api/models/admin/shared")
    assert "X-Modelyard-Home" not in own.headers
    with replica.client() as http:
        copy = http.get("/api/models/admin/shared")
        head = http.head(f"/admin/shared/resolve/{sha}/w.safetensors")
    assert copy.headers["X-Modelyard-Home"] == head.headers["X-Modelyard-Home"] == home_id
    assert float(copy.headers["X-Modelyard-Replica-Age"]) < 60
    assert peers[0]["node_id"] == home_id and peers[0]["state"] == "up"
    assert peers[0]["cursor"] == peers[0]["head"] and peers[0]["token_set"] is True
    with pytest.raises(Exception, match="home is node"):
        mirror.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="admin/shared")


@pytest.mark.parametrize("replica", ["lazy"], indirect=True)
def test_lazy_replica_pulls_bytes_through_on_first_download(
    node: RunningNode, replica: RunningNode, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: streamed while stored
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/lazy")
    home.upload_file(path_or_fileobj=data, path_in_repo="big.safetensors", repo_id="admin/lazy")
    digest = blake3.blake3(data).hexdigest()
    mirror = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    wait_for(lambda: mirror.file_exists("admin/lazy", "big.safetensors"))
    with replica.client(ADMIN_TOKEN) as http:
        assert http.head(f"/v1/blobs/{digest}").status_code == 404  # metadata first
    local = hf_hub_download(
        "admin/lazy", "big.safetensors", cache_dir=tmp_path / "c", endpoint=replica.url
    )
    assert Path(local).read_bytes() == data
    with replica.client(ADMIN_TOKEN) as http:
        assert http.head(f"/v1/blobs/{digest}").status_code == 200  # stored on the way


def test_replica_tree_keeps_the_last_commit_of_each_file(
    node: RunningNode, replica: RunningNode
) -> None:
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/history")
    first = home.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="admin/history")
    home.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="admin/history")
    last = home.upload_file(path_or_fileobj=b"b2", path_in_repo="b.txt", repo_id="admin/history")
    mirror = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    wait_for(
        lambda: (
            mirror.repo_exists("admin/history")
            and mirror.model_info("admin/history").sha == last.oid
        )
    )

    def last_commits(api: HfApi) -> dict[str, str | None]:
        tree = api.list_repo_tree("admin/history", expand=True)
        return {e.path: getattr(getattr(e, "last_commit", None), "oid", None) for e in tree}

    copied = last_commits(mirror)
    assert copied == last_commits(home)
    assert copied["a.txt"] == first.oid and copied["b.txt"] == last.oid


def test_a_node_refuses_itself_as_a_peer(start_node: Callable[..., RunningNode]) -> None:
    from registry.domain.access import CONSOLE

    node = start_node("self", sync=FAST_SYNC)
    with node.client(ADMIN_TOKEN) as http:
        refused = http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN})
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "PeerIsSelf"
        assert "this node itself" in refused.json()["error"]
        assert http.get("/v1/peers").json() == []
    # added where the URL could not be asked (the console, offline): its pulls say why
    peer = node.runtime.peers.add(CONSOLE, node.url, ADMIN_TOKEN, "eager")
    with node.client(ADMIN_TOKEN) as http:

        def explained() -> bool:
            found = http.get("/v1/peers").json()[0]
            return found["state"] != "up" and "this node itself" in (found["last_error"] or "")

        wait_for(explained)
        assert http.get("/v1/peers").json()[0]["id"] == peer.id
