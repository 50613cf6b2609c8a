"""The outbox survives mirrors being down and the node being killed: a node process commits
while its S3 mirror and its node mirror are stopped, is SIGKILLed twice (once with the mirrors
down, once while draining), and in the end every commit and ref has arrived on both."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from mirror.s3_target import S3Bucket
from tests.e2e.cluster import TOKEN, NodeProcess
from tests.s3 import S3Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FAST = {
    "MODELYARD_MIRROR__INTERVAL": "0.1",
    "MODELYARD_MIRROR__RETRY_INITIAL": "0.2",
    "MODELYARD_MIRROR__RETRY_MAX": "1",
}
COMMITS = 24


def mirrors(node: NodeProcess) -> dict[str, dict[str, Any]]:
    with node.client() as http:
        return {m["name"]: m for m in http.get("/v1/mirrors").json()}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_outbox_delivers_everything_after_mirror_outages_and_node_crashes(
    spawn: Callable[..., NodeProcess], s3_server: S3Server, s3_bucket: str
) -> None:
    target = spawn("target")
    home = spawn("home", env=FAST)
    bucket = f"s3://{s3_bucket}/outbox"
    with home.client() as http:
        for body in (
            {"name": "s3", "kind": "s3", "url": bucket},
            {"name": "b", "kind": "node", "url": target.url, "token": TOKEN},
        ):
            assert http.post("/v1/mirrors", json=body).status_code == 201
    api = HfApi(endpoint=home.url, token=TOKEN)
    api.create_repo("admin/busy")

    # Both mirrors go away; commits keep being accepted and queue up.
    s3_server.stop()
    target.stop()
    for i in range(COMMITS):
        blob = CommitOperationAdd(f"shard-{i % 4}.bin", os.urandom(256 * 1024))
        note = CommitOperationAdd("notes.txt", f"commit {i}\n".encode())
        api.create_commit("admin/busy", [blob, note], commit_message=f"c{i}")
    api.create_tag("admin/busy", tag="v1")
    wait_for(lambda: mirrors(home)["s3"]["state"] == "failing", "S3 failures recorded")
    down = mirrors(home)
    assert down["s3"]["backlog"] >= COMMITS and down["b"]["backlog"] >= COMMITS
    assert down["s3"]["last_error"] and down["b"]["last_error"]

    # A crash with the whole backlog waiting loses none of it.
    home.kill()
    home.start()
    assert mirrors(home)["s3"]["backlog"] == down["s3"]["backlog"]

    # The mirrors return; another crash while it drains, then it finishes.
    s3_server.start()
    target.start()
    wait_for(lambda: mirrors(home)["s3"]["backlog"] < down["s3"]["backlog"], "S3 draining")
    home.kill()
    home.start()
    wait_for(
        lambda: all(m["backlog"] == 0 for m in mirrors(home).values()),
        "both mirrors caught up",
    )

    with home.client() as http:
        commits = [c["id"] for c in http.get("/api/models/admin/busy/commits/main").json()]
        ours = http.get("/v1/repos/model/admin/busy/manifest/main").json()
    stored = S3Bucket(bucket)
    for commit in commits:  # every commit's manifest is in the bucket
        assert stored.resolve("model", "admin/busy", commit).commit == commit
    assert stored.resolve("model", "admin/busy", "main").commit == commits[0]
    assert stored.resolve("model", "admin/busy", "v1").commit == commits[0]
    with httpx.Client(base_url=target.url) as http:
        theirs = http.get("/v1/repos/model/admin/busy/manifest/main").json()
        tags = http.get("/api/models/admin/busy/refs").json()["tags"]
    assert {f["path"]: f["blake3"] for f in theirs["files"]} == {
        f["path"]: f["blake3"] for f in ours["files"]
    }
    assert [t["name"] for t in tags] == ["v1"]
    main = {f.path: f for f in stored.resolve("model", "admin/busy", "main").files}
    for file in ours["files"]:  # the bucket's bytes are the home's bytes
        served = httpx.get(f"{home.url}/v1/blobs/{file['blake3']}").content
        assert b"".join(stored.open(main[file["path"]])) == served
