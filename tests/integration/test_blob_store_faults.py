"""The node's S3 blob store failing (moto behind a loopback fault proxy: 503s, dropped
connections, answers slower than the store's timeout): a few failures are retried away; past
the bounded retries an upload answers 503 BlobStoreUnavailable with Retry-After, leaves no
partial bytes visible, and works again once the store does, with no restart; downloads come
from a peer meanwhile."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import RunningNode
from tests.faultproxy import Fault, FaultProxy
from tests.s3 import S3Server

UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BROKEN = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    running = FaultProxy(s3_server.port)
    yield running
    running.close()


@pytest.fixture
def node(start_node: Callable[..., RunningNode], s3_bucket: str, proxy: FaultProxy) -> RunningNode:
    return start_node(
        "s3-behind-proxy",
        blob_store=f"s3://{s3_bucket}/node",
        blob_store_endpoint=proxy.url,
        blob_store_timeout=1.0,  # a slow answer is one that takes longer
    )


def put_blob(node: RunningNode, data: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    digest = blake3.blake3(data).hexdigest()
    with node.client(node.admin_token) as http:
        answer = http.put(f"/v1/blobs/{digest}", content=data)
    return answer.status_code, dict(answer.headers), answer.json()


def stored(node: RunningNode, data: bytes) -> bool:
    with node.client(node.admin_token) as http:
        answer = http.head(f"/v1/blobs/{blake3.blake3(data).hexdigest()}")
    return answer.status_code in (200, 302, 307)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(reply=UNAVAILABLE, times=10_000),
        Fault(reply=BROKEN, times=10_000),
        Fault(drop=True, times=10_000),
        Fault(delay=3.0, times=10_000),
    ],
    ids=["503s", "500s", "dropped", "slow"],
)
def test_a_failing_store_gives_a_clear_503_and_nothing_half_visible(
    node: RunningNode, proxy: FaultProxy, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(300_000)
    proxy.inject(fault)
    caplog.set_level(logging.WARNING)
    status, headers, body = put_blob(node, data)
    assert status == 503, body
    assert body["code"] == "BlobStoreUnavailable" and headers["retry-after"]
    assert 2 <= proxy.faults_applied <= 6  # retried before giving up, a bounded number of times
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # one line with its cause
    assert "BlobStoreUnavailable" in lines[0].getMessage() and not lines[0].exc_info
    with node.client() as http:  # health and metrics say so while it lasts
        health = http.get("/v1/health").json()
        ready = http.get("/v1/health/ready")
        scrape = http.get("/metrics").text
    assert health["blob_store"] == "failing" and health["writable"] is False, health
    assert ready.status_code == 503 and ready.json()["blob_store"] == "failing"
    assert "modelyard_blob_store_up 0.0" in scrape
    proxy.inject(Fault(times=0))  # the store is back
    time.sleep(2.1)  # a failing store is probed again at most every 2 s
    with node.client() as http:  # clears by itself, with no traffic needed
        assert http.get("/v1/health/ready").status_code == 200
        assert "modelyard_blob_store_up 1.0" in http.get("/metrics").text
    if fault.delay:  # the bucket got the whole request, only its answer was late: the
        assert read_back(node, data) in (None, data)  # blob is there complete, or not at all
    else:
        assert read_back(node, data) is None  # the failed upload left nothing visible
    assert put_blob(node, data)[0] == 201  # and the same upload works now
    assert read_back(node, data) == data


def read_back(node: RunningNode, data: bytes) -> bytes | None:
    """The blob's bytes as the node serves them, None when it has none under that hash."""
    with node.client(node.admin_token) as http:
        answer = http.get(f"/v1/blobs/{blake3.blake3(data).hexdigest()}")
    return None if answer.status_code == 404 else answer.content


def test_a_few_failures_are_retried_away(
    node: RunningNode, proxy: FaultProxy, tmp_path: object
) -> None:
    """Two 503s in a row, then the store answers: the upload succeeds, byte for byte."""
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/flaky")
    data = os.urandom(2 * 1024 * 1024)
    proxy.inject(Fault(reply=UNAVAILABLE, times=2))
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/flaky")
    assert proxy.faults_applied == 2
    path = hf_hub_download(
        "admin/flaky", "w.bin", endpoint=node.url, cache_dir=str(tmp_path), token=node.admin_token
    )
    assert Path(path).read_bytes() == data


def test_downloads_come_from_a_peer_while_the_store_fails(
    start_node: Callable[..., RunningNode],
    node: RunningNode,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """A replica whose bucket stops answering serves its files from its peer, verified, and
    goes back to its bucket when that answers again."""
    home = start_node("home", blob_store=None)
    with node.client(node.admin_token) as http:
        added = http.post("/v1/peers", json={"url": home.url, "token": home.admin_token})
        assert added.status_code == 201, added.text
    api = HfApi(endpoint=home.url, token=home.admin_token)
    api.create_repo("admin/kept")
    data = os.urandom(1024 * 1024 + 5)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/kept")
    deadline = time.monotonic() + 30
    while not stored(node, data):
        assert time.monotonic() < deadline, "the replica never stored the blob"
        time.sleep(0.1)
    served_while_the_store_fails(node, proxy, "admin/kept", data, tmp_path)


def test_downloads_come_from_a_mirror_while_the_store_fails(
    start_node: Callable[..., RunningNode],
    s3_bucket: str,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """A node with no peer, whose bucket stops answering, serves a file from the S3 mirror it
    pushed it to (verified, not stored), and from its bucket again when that answers."""
    node = start_node(
        "s3-mirrored",
        blob_store=f"s3://{s3_bucket}/node",
        blob_store_endpoint=proxy.url,
        blob_store_timeout=1.0,
        mirror={"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.5},
    )
    with node.client(node.admin_token) as http:
        mirror = {"name": "bucket", "kind": "s3", "url": f"s3://{s3_bucket}/mirror"}
        assert http.post("/v1/mirrors", json=mirror).status_code == 201
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/mirrored")
    data = os.urandom(1024 * 1024 + 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/mirrored")
    deadline = time.monotonic() + 30
    with node.client(node.admin_token) as http:
        while http.get("/v1/mirrors").json()[0]["backlog"]:
            assert time.monotonic() < deadline, "the mirror never got the file"
            time.sleep(0.05)
    served_while_the_store_fails(node, proxy, "admin/mirrored", data, tmp_path)


def served_while_the_store_fails(
    node: RunningNode, proxy: FaultProxy, repo: str, data: bytes, tmp_path: Path
) -> None:
    """The bucket stops answering: `repo`'s w.bin is still served (health says the store
    fails, and the bucket was asked), and from the bucket again once it answers."""
    proxy.inject(Fault(drop=True, times=10_000))
    time.sleep(2.1)  # the bucket is asked again after 2 s without an answer

    def download(where: str) -> bytes:
        path = hf_hub_download(
            repo,
            "w.bin",
            endpoint=node.url,
            cache_dir=tmp_path / where,
            token=node.admin_token,
            force_download=True,
        )
        return Path(path).read_bytes()

    applied = proxy.faults_applied
    assert download("while-failing") == data
    assert proxy.faults_applied > applied  # the node's own bucket was asked, and failed
    with node.client() as http:
        assert http.get("/v1/health").json()["blob_store"] == "failing"
    proxy.inject(Fault(times=0))
    time.sleep(2.1)
    assert download("after") == data
    with node.client() as http:
        assert http.get("/v1/health").json()["blob_store"] == "ok"
