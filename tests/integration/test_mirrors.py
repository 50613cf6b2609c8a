"""Node-side mirroring: every commit reaches an S3 bucket and a Hub (a second node as the Hub
endpoint, through huggingface_hub) with identical bytes and hashes, through the outbox."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import httpx
from huggingface_hub import HfApi, hf_hub_download

from mirror import download_repo
from mirror.hub import HubTarget
from mirror.node import NodeTarget
from mirror.s3_target import S3Bucket
from mirror.targets import COMMIT_MARKER, RemoteHead
from registry.domain.digest import Digest
from tests.blobs import corrupt_stored_blob, overwrite_stored_blob
from tests.conftest import RunningNode

FAST = {"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.5}
WEIGHTS = os.urandom(3 * 1024 * 1024 + 17)
CARD = b"---\nkind: lora\n---\nA mirrored LoRA.\n"


def publish(node: RunningNode, repo: str = "admin/mirrored") -> HfApi:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo(repo)
    api.upload_file(path_or_fileobj=CARD, path_in_repo="README.md", repo_id=repo)
    api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="w.safetensors", repo_id=repo)
    api.create_tag(repo, tag="v1")
    return api


def wait_pushed(node: RunningNode, names: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with node.client(node.admin_token) as http:
        while True:
            mirrors = http.get("/v1/mirrors").json()
            if {m["name"] for m in mirrors if m["backlog"] == 0} >= names:
                return list(mirrors)
            assert time.monotonic() < deadline, mirrors
            time.sleep(0.05)


def add_mirror(node: RunningNode, **body: object) -> httpx.Response:
    with node.client(node.admin_token) as http:
        return http.post("/v1/mirrors", json=body)


def test_commits_reach_s3_and_a_hub_with_identical_bytes(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    hub = start_node("hub")
    node = start_node("home", mirror=FAST)
    assert (
        add_mirror(node, name="bucket", kind="s3", url=f"s3://{s3_bucket}/models").status_code
        == 201
    )
    added = add_mirror(node, name="hub", kind="hf", url=hub.url, token=hub.admin_token)
    assert added.status_code == 201 and added.json()["token_set"] is True
    assert "token" not in added.json()
    api = publish(node)
    mirrors = wait_pushed(node, {"bucket", "hub"})
    assert all(m["state"] == "ok" and m["pushed"] > 0 for m in mirrors), mirrors

    home = api.model_info("admin/mirrored", files_metadata=True)
    theirs = HfApi(endpoint=hub.url).model_info("admin/mirrored", files_metadata=True)
    assert {s.rfilename: s.size for s in theirs.siblings or []} == {
        s.rfilename: s.size for s in home.siblings or []
    }
    for sibling in home.siblings or []:
        ours = Path(hf_hub_download("admin/mirrored", sibling.rfilename, endpoint=node.url))
        copy = Path(hf_hub_download("admin/mirrored", sibling.rfilename, endpoint=hub.url))
        assert copy.read_bytes() == ours.read_bytes(), sibling.rfilename
    assert HfApi(endpoint=hub.url).list_repo_refs("admin/mirrored").tags[0].name == "v1"

    # The bucket alone, with both nodes stopped: resolve main and verify every byte.
    hub.server.stop()
    node.server.stop()
    bucket = S3Bucket(f"s3://{s3_bucket}/models")
    for revision in ("main", "v1", home.sha or ""):
        manifest = bucket.resolve("model", "admin/mirrored", revision)
        assert manifest.commit == home.sha
        files = {f.path: f for f in manifest.files}
        data = b"".join(bucket.open(files["w.safetensors"]))
        assert data == WEIGHTS
        assert files["w.safetensors"].blake3 == blake3.blake3(WEIGHTS).hexdigest()
        assert files["w.safetensors"].sha256 == hashlib.sha256(WEIGHTS).hexdigest()
        assert set(files) == {".gitattributes", "README.md", "w.safetensors"}
    # ... and the client library pulls the repo from it, as a user would.
    pulled = download_repo("admin/mirrored@v1", tmp_path / "pulled", [f"s3://{s3_bucket}/models"])
    assert (tmp_path / "pulled" / "w.safetensors").read_bytes() == WEIGHTS
    assert (tmp_path / "pulled" / "README.md").read_bytes() == CARD
    assert pulled.commit == home.sha


def test_mirror_api_refuses_bad_configs_and_hides_tokens(node: RunningNode, s3_bucket: str) -> None:
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"name": "x", "kind": "ftp", "url": "ftp://h"}, 422, "BadRequest"),
        ({"name": "x", "kind": "s3", "url": "http://not-s3"}, 422, "UrlSchemeNotAllowed"),
        ({"name": "x", "kind": "node", "url": "file:///etc"}, 422, "UrlSchemeNotAllowed"),
        ({"name": "../x", "kind": "s3", "url": f"s3://{s3_bucket}"}, 400, "BadRequest"),
        ({"name": "x", "kind": "s3", "url": f"s3://{s3_bucket}", "extra": 1}, 422, "BadRequest"),
    ]
    for body, status, code in cases:
        answer = add_mirror(node, **body)
        assert (answer.status_code, answer.headers["X-Error-Code"]) == (status, code), body
    with node.client() as http:
        assert http.get("/v1/mirrors").status_code == 401
        assert http.post("/v1/mirrors", json={"name": "y", "kind": "s3"}).status_code in (401, 422)
    ok = add_mirror(node, name="b", kind="node", url="http://127.0.0.1:9", token="secret-token")
    assert ok.status_code == 201
    again = add_mirror(node, name="b", kind="s3", url=f"s3://{s3_bucket}")
    assert (again.status_code, again.headers["X-Error-Code"]) == (409, "MirrorExists")
    with node.client(node.admin_token) as http:
        listing = http.get("/v1/mirrors")
        assert "secret-token" not in listing.text
        assert http.delete("/v1/mirrors/b").status_code == 200
        assert http.delete("/v1/mirrors/b").headers["X-Error-Code"] == "MirrorNotFound"


def lazy_replica_of(home: RunningNode, start_node: Callable[..., RunningNode]) -> RunningNode:
    """A replica that fetches blobs only on request, and has A's metadata already."""
    replica = start_node("replica", sync={"long_poll": 1, "probe_interval": 0.2})
    with replica.client(replica.admin_token) as http:
        peer = {"url": home.url, "token": home.admin_token, "blobs": "lazy"}
        assert http.post("/v1/peers", json=peer).status_code == 201
        deadline = time.monotonic() + 30
        while http.get("/api/models/admin/mirrored").status_code != 200:
            assert time.monotonic() < deadline, "never replicated"
            time.sleep(0.05)
    return replica


def test_a_replica_pulls_missing_bytes_through_its_s3_mirror_when_no_peer_has_them(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    home = start_node("home", mirror=FAST)
    url = f"s3://{s3_bucket}/models"
    assert add_mirror(home, name="bucket", kind="s3", url=url).status_code == 201
    publish(home)
    wait_pushed(home, {"bucket"})
    replica = lazy_replica_of(home, start_node)
    # The replica knows the bucket (it pushes nothing there: no repo matches).
    assert (
        add_mirror(replica, name="bucket", kind="s3", url=url, repos="nobody/*").status_code == 201
    )
    home.server.stop()  # the only peer with the bytes is gone
    got = hf_hub_download(
        "admin/mirrored", "w.safetensors", endpoint=replica.url, cache_dir=tmp_path
    )
    assert Path(got).read_bytes() == WEIGHTS
    digest = blake3.blake3(WEIGHTS).hexdigest()
    with replica.client() as http:  # verified and kept: served from the replica's own store now
        assert http.get(f"/v1/blobs/{digest}").content == WEIGHTS


def test_a_replica_pulls_missing_bytes_through_its_hub_mirror_by_path(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    hub = start_node("hub")
    home = start_node("home", mirror=FAST)
    assert (
        add_mirror(home, name="hub", kind="hf", url=hub.url, token=hub.admin_token).status_code
        == 201
    )
    publish(home)
    wait_pushed(home, {"hub"})
    replica = lazy_replica_of(home, start_node)
    body = {"name": "hub", "kind": "hf", "url": hub.url, "repos": "nobody/*"}
    assert add_mirror(replica, **body).status_code == 201
    home.server.stop()
    got = hf_hub_download(
        "admin/mirrored", "w.safetensors", endpoint=replica.url, cache_dir=tmp_path
    )
    assert Path(got).read_bytes() == WEIGHTS


def test_bytes_that_rotted_on_the_node_never_reach_a_mirror(
    start_node: Callable[..., RunningNode], s3_bucket: str
) -> None:
    hub = start_node("hub")
    node = start_node("home", mirror=FAST)
    url = f"s3://{s3_bucket}/rot"
    assert add_mirror(node, name="bucket", kind="s3", url=url).status_code == 201
    assert add_mirror(node, name="hub", kind="hf", url=hub.url, token=hub.admin_token).status_code
    digest = Digest(blake3.blake3(WEIGHTS).hexdigest())
    with node.client(node.admin_token) as http:  # stored first, then rots, then is committed
        assert http.put(f"/v1/blobs/{digest.hex}", content=WEIGHTS).status_code == 201
        corrupt_stored_blob(node.settings, digest)
        HfApi(endpoint=node.url, token=node.admin_token).create_repo("admin/rot")
        lfs = {"path": "w.bin", "algo": "sha256", "oid": hashlib.sha256(WEIGHTS).hexdigest()}
        lines = [{"key": "header", "value": {"summary": "rot"}}, {"key": "lfsFile", "value": lfs}]
        body = "\n".join(json.dumps(line) for line in lines)
        headers = {"content-type": "application/x-ndjson"}
        assert http.post("/api/models/admin/rot/commit/main", content=body, headers=headers)

    def failing() -> bool:
        with node.client(node.admin_token) as http:
            states = {m["name"]: m for m in http.get("/v1/mirrors").json()}
        return all("no longer hash" in (m["last_error"] or "") for m in states.values())

    wait_until(failing, "both pushes refused the rotted bytes")
    bucket = S3Bucket(url)
    assert not bucket.has_blob(digest.hex)
    assert "w.bin" not in HfApi(endpoint=hub.url).list_repo_files("admin/rot")

    overwrite_stored_blob(node.settings, digest, WEIGHTS)  # repaired (as a scrub would)
    wait_pushed(node, {"bucket", "hub"})
    assert b"".join(bucket.open(bucket.resolve("model", "admin/rot", "main").files[-1])) == WEIGHTS
    copy = hf_hub_download("admin/rot", "w.bin", endpoint=hub.url)
    assert Path(copy).read_bytes() == WEIGHTS


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_each_target_reads_a_head_and_keeps_it_once_under_a_free_name(
    node: RunningNode, s3_bucket: str
) -> None:
    """What the pusher relies on after a restore: `head` names the commit of ours a ref
    carries (from the bucket's ref, or a Hub-like commit's description), and `keep` makes
    `recovered/<name>` point there once, taking `-2` when the name keeps another head."""
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/kept")
    ours = "ab" * 20
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="admin/kept")
    second = api.upload_file(
        path_or_fileobj=b"2",
        path_in_repo="a.txt",
        repo_id="admin/kept",
        commit_description=f"{COMMIT_MARKER} {ours}",
    )
    node_target = NodeTarget("node", node.url, node.admin_token)
    for target in (node_target, HubTarget("hf", node.url, node.admin_token)):
        head = target.head("model", "admin/kept", "refs/heads/main")
        assert head == RemoteHead(second.oid, ours), target.name
        assert target.head("model", "admin/kept", "refs/heads/nope") is None
        assert target.head("model", "admin/missing", "refs/heads/main") is None
        older = RemoteHead(first.oid, None)
        assert target.keep("model", "admin/kept", "refs/heads/main", older) == "recovered/main"
        assert target.keep("model", "admin/kept", "refs/heads/main", older) == "recovered/main"
        assert target.keep("model", "admin/kept", "refs/tags/main", head) == "recovered/main-2"
        assert api.model_info("admin/kept", revision="recovered/main").sha == first.oid
        assert api.model_info("admin/kept", revision="recovered/main-2").sha == second.oid
        for branch in ("recovered/main", "recovered/main-2"):
            api.delete_branch("admin/kept", branch=branch)
    node_target.close()

    bucket = S3Bucket(f"s3://{s3_bucket}/kept")
    assert bucket.head("model", "admin/kept", "refs/heads/main") is None
    bucket.put_ref("model", "admin/kept", "refs/heads/main", ours, 1)
    head = bucket.head("model", "admin/kept", "refs/heads/main")
    assert head == RemoteHead(ours, ours)
    assert bucket.keep("model", "admin/kept", "refs/heads/main", head) == "recovered/main"
    assert bucket.keep("model", "admin/kept", "refs/heads/main", head) == "recovered/main"
    other = RemoteHead("cd" * 20, "cd" * 20)
    assert bucket.keep("model", "admin/kept", "refs/heads/main", other) == "recovered/main-2"
    assert bucket.refs("model", "admin/kept") == {
        "refs/heads/main": ours,
        "refs/heads/recovered/main": ours,
        "refs/heads/recovered/main-2": "cd" * 20,
    }
