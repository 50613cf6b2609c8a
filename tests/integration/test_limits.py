"""Size limits on a real node: 413 (431 for headers) naming the limit, before anything is stored.

Each refusal is checked to change nothing: the repo's head, refs and tree, and the blob store.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator

import blake3
import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from registry.domain.tokens import sign
from registry.metadata.db import Database
from tests.blobs import stored_blob_files, upload_leftovers
from tests.conftest import RunningNode
from tests.hub import NDJSON, add, header, ndjson

REPO = "/api/models/admin/guarded"
StartNode = Callable[..., RunningNode]


def client(node: RunningNode, token: str | None = None, address: str = "127.0.0.1") -> httpx.Client:
    """A client connecting from `address` (any of 127.0.0.0/8 is this machine); it follows
    redirects, as a node whose blobs are in S3 answers downloads with one to the bucket."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(
        base_url=node.url,
        headers=headers,
        timeout=60,
        transport=transport,
        follow_redirects=True,
    )


def create(http: httpx.Client, repo: str) -> httpx.Response:
    namespace, name = repo.split("/")
    return http.post("/api/repos/create", json={"name": name, "organization": namespace})


def rejections(node: RunningNode) -> dict[str, float]:
    """`modelyard_limit_rejections_total` by limit, from the node's /metrics."""
    counts = {}
    for line in httpx.get(f"{node.url}/metrics").text.splitlines():
        if line.startswith("modelyard_limit_rejections_total{"):
            limit = line.split('limit="', 1)[1].split('"', 1)[0]
            counts[limit] = float(line.rsplit(" ", 1)[1])
    return counts


def assert_refused(response: httpx.Response, status: int, code: str, limit: str) -> str:
    """The refusal is in the shape of every error and names its limit; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["X-Error-Code"] == code
    assert response.headers["X-Modelyard-Limit"] == limit
    body = response.json()
    assert body["code"] == code and body["detail"]["limit"] == limit, body
    message: str = body["error"]
    assert limit in message and f"MODELYARD_LIMITS__{limit.upper()}" in message, message
    return message


# Size limits

SIZES = {
    "max_blob_bytes": 1000,
    "max_commit_operations": 3,
    "max_json_bytes": 4096,
    "max_commit_bytes": 8192,
    "max_header_bytes": 2048,
}


@pytest.fixture
def sized(start_node: StartNode) -> RunningNode:
    return start_node("node", limits=SIZES)


@pytest.fixture
def http(sized: RunningNode) -> Iterator[httpx.Client]:
    api = HfApi(endpoint=sized.url, token=sized.admin_token)
    api.create_repo("admin/guarded")
    api.upload_file(path_or_fileobj=b"keep", path_in_repo="keep.txt", repo_id="admin/guarded")
    with client(sized, sized.admin_token) as http:
        yield http


def state(node: RunningNode, http: httpx.Client) -> tuple[object, ...]:
    """What a refused request must not change: main's head, refs, tree, stored blobs."""
    info = http.get(f"{REPO}/revision/main").json()
    refs = http.get(f"{REPO}/refs").json()
    tree = http.get(f"{REPO}/tree/main", params={"recursive": "true"}).json()
    assert not upload_leftovers(node.settings)
    return (
        info["sha"],
        json.dumps(refs, sort_keys=True),
        [(e["path"], e["oid"]) for e in tree],
        stored_blob_files(node.settings),
    )


def chunked(data: bytes, size: int = 300) -> Iterator[bytes]:
    """A body without Content-Length: the limit applies while it streams in."""
    return (data[i : i + size] for i in range(0, len(data), size))


def test_oversized_blob_is_413_before_anything_is_stored(
    sized: RunningNode, http: httpx.Client
) -> None:
    before = state(sized, http)
    data = os.urandom(2000)
    url = f"/v1/blobs/{blake3.blake3(data).hexdigest()}"
    message = assert_refused(http.put(url, content=data), 413, "PayloadTooLarge", "max_blob_bytes")
    assert "2000 bytes exceeds the limit of 1000 bytes" in message
    streamed = http.put(url, content=chunked(data))
    assert "content-length" not in streamed.request.headers
    assert_refused(streamed, 413, "PayloadTooLarge", "max_blob_bytes")
    # An LFS upload URL validly signed for the size (the batch would not have given one).
    oid = hashlib.sha256(data).hexdigest()
    secret = Database(sized.settings.effective_database_url).node_value("secret", "")
    expires = str(int(time.time()) + 600)
    query: dict[str, str | int] = {
        "size": len(data),
        "expires": expires,
        "sig": sign(secret, oid, "2000", expires),
    }
    for body in (data, chunked(data)):
        lfs = http.put(f"/lfs/objects/{oid}", params=query, content=body)
        assert_refused(lfs, 413, "PayloadTooLarge", "max_blob_bytes")
    assert state(sized, http) == before
    fits = os.urandom(1000)  # at the limit is allowed
    assert http.put(f"/v1/blobs/{blake3.blake3(fits).hexdigest()}", content=fits).status_code == 201
    assert rejections(sized) == {"max_blob_bytes": 4.0}


def test_oversized_file_is_refused_when_declared(sized: RunningNode, http: httpx.Client) -> None:
    """Preupload and the LFS batch refuse a declared size before any byte is sent."""
    before = state(sized, http)
    preupload = http.post(
        f"{REPO}/preupload/main",
        json={"files": [{"path": "big.bin", "size": 2000, "sample": ""}]},
    )
    message = assert_refused(preupload, 413, "PayloadTooLarge", "max_blob_bytes")
    assert "big.bin is 2000 bytes" in message and "at most 1000 bytes" in message
    batch = http.post(
        "/admin/guarded.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": "a" * 64, "size": 2000}]},
        headers={"content-type": "application/vnd.git-lfs+json"},
    )
    assert_refused(batch, 413, "PayloadTooLarge", "max_blob_bytes")
    inline = ndjson(header(), add("big.txt", b"x" * 1500))  # a regular file inside the commit
    committed = http.post(f"{REPO}/commit/main", content=inline, headers=NDJSON)
    assert "big.txt is 1500 bytes" in assert_refused(
        committed, 413, "PayloadTooLarge", "max_blob_bytes"
    )
    api = HfApi(endpoint=sized.url, token=sized.admin_token)
    with pytest.raises(HfHubHTTPError, match="max_blob_bytes") as raised:
        api.upload_file(path_or_fileobj=b"y" * 2000, path_in_repo="y.bin", repo_id="admin/guarded")
    assert raised.value.response.status_code == 413
    assert state(sized, http) == before
    assert rejections(sized) == {"max_blob_bytes": 4.0}


def test_commit_with_too_many_files_is_413(sized: RunningNode, http: httpx.Client) -> None:
    before = state(sized, http)
    four = ndjson(header(), *(add(f"f{i}.txt") for i in range(4)))
    response = http.post(f"{REPO}/commit/main", content=four, headers=NDJSON)
    message = assert_refused(response, 413, "PayloadTooLarge", "max_commit_operations")
    assert "4 file operations" in message and "at most 3 per commit" in message
    api = HfApi(endpoint=sized.url, token=sized.admin_token)
    operations = [CommitOperationAdd(f"g{i}.txt", b"g") for i in range(4)]
    with pytest.raises(HfHubHTTPError, match="max_commit_operations"):
        api.create_commit("admin/guarded", operations=operations, commit_message="four")
    assert state(sized, http) == before
    three = ndjson(header(), *(add(f"f{i}.txt") for i in range(3)))
    assert http.post(f"{REPO}/commit/main", content=three, headers=NDJSON).status_code == 200
    assert rejections(sized) == {"max_commit_operations": 2.0}


def test_oversized_json_and_commit_bodies_are_413(sized: RunningNode, http: httpx.Client) -> None:
    before = state(sized, http)
    big_json = json.dumps({"name": "n" * 5000}).encode()
    json_headers = {"content-type": "application/json"}
    for body in (big_json, chunked(big_json)):
        created = http.post("/api/repos/create", content=body, headers=json_headers)
        assert_refused(created, 413, "PayloadTooLarge", "max_json_bytes")
    deletes = [{"key": "deletedFile", "value": {"path": f"d{i:05}.txt"}} for i in range(200)]
    big_commit = ndjson(header(), *deletes)
    assert len(big_commit) > 8192
    for body in (big_commit, chunked(big_commit, 1000)):
        committed = http.post(f"{REPO}/commit/main", content=body, headers=NDJSON)
        message = assert_refused(committed, 413, "PayloadTooLarge", "max_commit_bytes")
        assert "limit of 8192 bytes" in message
    assert state(sized, http) == before
    assert http.get("/api/models/admin/n").status_code == 404
    assert rejections(sized) == {"max_json_bytes": 2.0, "max_commit_bytes": 2.0}


def test_huge_headers_are_431(sized: RunningNode, http: httpx.Client) -> None:
    before = state(sized, http)
    big = {"x-big": "a" * 3000}
    assert_refused(http.get("/v1/health", headers=big), 431, "HeadersTooLarge", "max_header_bytes")
    commit = ndjson(header(), add("h.txt"))
    refused = http.post(f"{REPO}/commit/main", content=commit, headers={**NDJSON, **big})
    assert_refused(refused, 431, "HeadersTooLarge", "max_header_bytes")
    assert state(sized, http) == before
    assert http.get("/v1/health", headers={"x-ok": "a" * 500}).status_code == 200
    assert rejections(sized) == {"max_header_bytes": 2.0}


def test_size_limits_of_zero_are_off(start_node: StartNode) -> None:
    node = start_node("node", limits={"max_blob_bytes": 0, "max_commit_operations": 0})
    data = os.urandom(3 * 1024 * 1024)
    with client(node, node.admin_token) as http:
        stored = http.put(f"/v1/blobs/{blake3.blake3(data).hexdigest()}", content=data)
        assert stored.status_code == 201, stored.text
        assert create(http, "admin/many").status_code == 200
        many = ndjson(header(), *(add(f"f{i}.txt") for i in range(300)))
        committed = http.post("/api/models/admin/many/commit/main", content=many, headers=NDJSON)
        assert committed.status_code == 200, committed.text
