"""The resilient client: falls back across a dead node, a node serving corrupted bytes and an
S3 mirror; names every source's failure when all fail; resumes an interrupted download; keeps
a node's token from the bucket a download is redirected to."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest
from huggingface_hub import HfApi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mirror import AllSourcesFailedError, Downloader, Progress, RetryPolicy, download_repo
from registry.client.rangeget import get_range_into
from tests.conftest import RunningNode, ServerThread
from tests.faultproxy import Fault, FaultProxy

FAST = {"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.5}
NO_WAIT = RetryPolicy(attempts=1, initial_wait=0, max_wait=0)
WEIGHTS = os.urandom(3 * 1024 * 1024 + 5)
BIG = os.urandom(80 * 1024 * 1024 + 3)  # three parallel ranges


def dead_url() -> str:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def publish(node: RunningNode, files: dict[str, bytes], repo: str = "admin/model") -> str:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo(repo)
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)
    return str(api.model_info(repo).sha)


def wait_mirrored(node: RunningNode, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with node.client(node.admin_token) as http:
        while any(m["backlog"] for m in http.get("/v1/mirrors").json()):
            assert time.monotonic() < deadline, "the mirror did not catch up"
            time.sleep(0.05)


@pytest.fixture
def corrupting(start_node: Callable[..., RunningNode]) -> Iterator[tuple[RunningNode, FaultProxy]]:
    """A node behind a fault proxy. Its blobs stay on its local disk whatever the test run's
    blob store: the bytes must flow through the proxy, and a node on S3 redirects around it."""
    node = start_node("home", mirror=FAST, blob_store=None)
    proxy = FaultProxy(node.port)
    yield node, proxy
    proxy.close()


def test_download_falls_back_past_a_dead_node_and_corrupted_bytes_to_s3(
    corrupting: tuple[RunningNode, FaultProxy], s3_bucket: str, tmp_path: Path
) -> None:
    node, proxy = corrupting
    with node.client(node.admin_token) as http:
        body = {"name": "s3", "kind": "s3", "url": f"s3://{s3_bucket}/m"}
        assert http.post("/v1/mirrors", json=body).status_code == 201
    commit = publish(node, {"README.md": b"# hi\n", "w.safetensors": WEIGHTS})
    wait_mirrored(node)
    proxy.inject(Fault(corrupt_at=200_000, times=1000))  # every response past 200 kB is wrong
    sources = [dead_url(), proxy.url, f"s3://{s3_bucket}/m"]
    seen: list[Progress] = []
    result = download_repo("admin/model@main", tmp_path / "out", sources, progress=seen.append)
    assert (tmp_path / "out" / "w.safetensors").read_bytes() == WEIGHTS
    assert (tmp_path / "out" / "README.md").read_bytes() == b"# hi\n"
    assert result.commit == commit and result.manifest_source == proxy.url
    assert result.sources_used["w.safetensors"] == f"s3://{s3_bucket}/m"  # proxy's bytes refused
    assert result.sources_used["README.md"] == proxy.url
    assert seen and seen[-1].done == seen[-1].total
    assert not list((tmp_path / "out" / ".modelyard").iterdir())  # no partial file left


def test_download_with_every_source_down_names_each_failure(tmp_path: Path, s3_bucket: str) -> None:
    dead = dead_url()
    sources = [dead, f"s3://{s3_bucket}-missing/m", "hf:nobody/nothing"]
    with pytest.raises(AllSourcesFailedError) as caught:
        with Downloader(sources, retry=NO_WAIT) as downloader:
            downloader.download_repo("admin/model", tmp_path)
    failures = caught.value.detail["failures"]
    assert isinstance(failures, list)
    assert [f["source"] for f in failures] == [
        dead,
        f"s3://{s3_bucket}-missing/m",
        "hf:nobody/nothing",
    ]
    assert all(f["error"] for f in failures)
    assert dead in str(caught.value) and "missing" in str(caught.value)
    assert not (tmp_path / "w.safetensors").exists()


def first_range_start(node: RunningNode) -> int:
    ranges = [r for m, p, r in node.log.requests if "/v1/blobs/" in p and r]
    assert ranges, "no ranged request reached the node"
    return int(ranges[0].split("=")[1].split("-")[0])


def test_interrupted_streamed_download_resumes_without_starting_over(
    corrupting: tuple[RunningNode, FaultProxy], tmp_path: Path
) -> None:
    node, proxy = corrupting
    publish(node, {"big.safetensors": BIG})
    cut_at = 32 * 1024 * 1024  # the first streamed piece

    def cut_later(progress: Progress) -> None:  # the source goes away mid-download
        if progress.done >= cut_at:
            proxy.inject(Fault(drop=True, times=1000))  # every new connection dropped

    with pytest.raises(AllSourcesFailedError):
        with Downloader([proxy.url], retry=NO_WAIT, parallel=1, progress=cut_later) as d:
            d.download_repo("admin/model", tmp_path)
    assert not (tmp_path / "big.safetensors").exists()  # never a partial file in place
    node.log.requests.clear()
    with Downloader([node.url], retry=NO_WAIT, parallel=1) as downloader:
        result = downloader.download_repo("admin/model", tmp_path)
    data = (tmp_path / "big.safetensors").read_bytes()
    assert blake3.blake3(data).digest() == blake3.blake3(BIG).digest()
    # What was missing was fetched, starting where the verified prefix ended.
    assert first_range_start(node) >= cut_at
    assert result.fetched_bytes <= len(BIG) - cut_at


def test_a_transfer_cut_mid_stream_resumes_from_the_bytes_it_kept(
    corrupting: tuple[RunningNode, FaultProxy], tmp_path: Path
) -> None:
    node, proxy = corrupting
    medium = BIG[: 20 * 1024 * 1024]  # one range, below the streaming size
    publish(node, {"medium.bin": medium})
    proxy.inject(Fault(cut_after=12 * 1024 * 1024, times=5))  # only the blob is that long
    with pytest.raises(AllSourcesFailedError):
        with Downloader([proxy.url], retry=NO_WAIT, parallel=1) as downloader:
            downloader.download_repo("admin/model", tmp_path)
    node.log.requests.clear()
    with Downloader([node.url], retry=NO_WAIT, parallel=1) as downloader:
        result = downloader.download_repo("admin/model", tmp_path)
    assert (tmp_path / "medium.bin").read_bytes() == medium
    assert first_range_start(node) >= 8 * 1024 * 1024  # the ledger is saved every 8 MiB
    assert result.fetched_bytes <= len(medium) - 8 * 1024 * 1024


def test_download_repo_fetches_only_the_allowed_patterns(node: RunningNode, tmp_path: Path) -> None:
    publish(node, {"ok.txt": b"fine", "skip.bin": b"no"})
    with Downloader([node.url], retry=NO_WAIT) as downloader:
        result = downloader.download_repo("admin/model", tmp_path / "t", allow=["*.txt"])
    assert set(result.files) == {"ok.txt"}
    assert result.files["ok.txt"].read_bytes() == b"fine"


def test_a_ranged_get_keeps_the_token_from_the_origin_it_is_redirected_to() -> None:
    """A node on S3 redirects downloads to presigned bucket URLs: the node's token must not
    follow (S3 refuses a request with two credentials, and the bucket's host is not the node)."""
    seen: list[tuple[str, str | None]] = []

    def recorded(request: Request) -> None:
        seen.append((request.url.path, request.headers.get("authorization")))

    async def blob(request: Request) -> Response:
        recorded(request)
        return Response(b"hello", status_code=206, headers={"content-range": "bytes 0-4/5"})

    bucket = ServerThread(Starlette(routes=[Route("/bucket/blob", blob)]))
    bucket.start()

    async def redirect(request: Request) -> Response:
        recorded(request)
        return RedirectResponse(f"{bucket.url}/bucket/blob?X-Amz-Signature=x", status_code=302)

    node = ServerThread(Starlette(routes=[Route("/v1/blobs/{digest}", redirect)]))
    node.start()
    got = bytearray(5)

    def sink(offset: int, view: memoryview) -> None:
        got[offset : offset + len(view)] = view

    try:
        get_range_into(f"{node.url}/v1/blobs/ab", {"authorization": "Bearer myd_x"}, 0, 5, sink)
    finally:
        node.stop()
        bucket.stop()
    assert got == b"hello"
    assert seen == [("/v1/blobs/ab", "Bearer myd_x"), ("/bucket/blob", None)]
