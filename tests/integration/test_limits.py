"""Abuse limits on a real node: rate limits answer 429 with Retry-After and name the limit;
size limits answer 413 (431 for headers) before anything is stored; cheap reads, health and
metrics are never limited; the admin and exempt users (a peer's) are never rate limited.

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
from registry.service.auth import AuthService
from tests.blobs import stored_blob_files, upload_leftovers
from tests.conftest import FAST_SYNC, RunningNode
from tests.hub import NDJSON, add, header, ndjson

REPO = "/api/models/admin/guarded"
StartNode = Callable[..., RunningNode]


def make_tokens(node: RunningNode, *users: str, write: bool = True) -> list[str]:
    db = Database(node.settings.effective_database_url)
    try:
        return [AuthService(db).create_token(user, write=write) for user in users]
    finally:
        db.dispose()


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


def assert_rate_limited(response: httpx.Response, limit: str, rate: str) -> int:
    """A 429 saying which limit, its rate and when to retry; returns Retry-After."""
    message = assert_refused(response, 429, "RateLimited", limit)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60, retry_after
    assert rate in message and f"retry in {retry_after} s" in message, message
    assert response.json()["detail"]["retry_after"] == retry_after
    assert response.headers["RateLimit"] == f'"{limit}";r=0;t={retry_after}'
    assert f'"{limit}";q=' in response.headers["RateLimit-Policy"]
    return retry_after


# Rate limits


def test_writes_over_the_token_limit_are_429_with_retry_after(start_node: StartNode) -> None:
    node = start_node("node", limits={"writes_per_token": "3/minute", "writes_per_address": ""})
    alice, bob = make_tokens(node, "alice", "bob")
    with client(node, alice) as http:
        for i in range(3):
            assert create(http, f"alice/r{i}").status_code == 200
        refused = create(http, "alice/r3")
        assert_rate_limited(refused, "writes_per_token", "3 per 1 minute")
        assert "Too many writes with this token" in refused.json()["error"]
        assert http.get("/api/models/alice/r3").status_code == 404  # nothing was created
        assert http.get("/api/models/alice/r2").status_code == 200  # reads still work
    with client(node, bob) as http:  # another token has its own budget
        assert create(http, "bob/r0").status_code == 200
    assert rejections(node) == {"writes_per_token": 1.0}


def test_address_limit_counts_every_token_from_the_address(start_node: StartNode) -> None:
    node = start_node("node", limits={"writes_per_token": "", "writes_per_address": "4/minute"})
    alice, bob, carol = make_tokens(node, "alice", "bob", "carol")
    for token, user in ((alice, "alice"), (bob, "bob")):
        with client(node, token) as http:
            assert [create(http, f"{user}/r{i}").status_code for i in range(2)] == [200, 200]
    with client(node, carol) as http:  # a fresh token, the same address: still limited
        refused = create(http, "carol/r0")
        assert_rate_limited(refused, "writes_per_address", "4 per 1 minute")
        assert "from address 127.0.0.1" in refused.json()["error"]
    with client(node) as http:  # and so is a request without a token
        assert create(http, "carol/r0").status_code == 429
    with client(node, carol, address="127.0.0.2") as http:  # another address has its own
        assert create(http, "carol/r0").status_code == 200
    # Behind a reverse proxy the address is the forwarded one (uvicorn trusts X-Forwarded-For
    # from FORWARDED_ALLOW_IPS, 127.0.0.1 by default).
    with client(node, carol) as http:
        forwarded = {"x-forwarded-for": "127.0.0.3"}
        created = http.post(
            "/api/repos/create", json={"name": "r1", "organization": "carol"}, headers=forwarded
        )
        assert created.status_code == 200, created.text
    assert rejections(node) == {"writes_per_address": 2.0}


def test_rate_limit_resets_after_its_window(start_node: StartNode) -> None:
    node = start_node("node", limits={"writes_per_token": "2 per 2 seconds"})
    (alice,) = make_tokens(node, "alice")
    with client(node, alice) as http:
        refused = None
        for i in range(10):  # a slow machine may cross a window: bounded retries
            response = create(http, f"alice/r{i}")
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 200, response.text
        assert refused is not None, "never limited"
        retry_after = assert_rate_limited(refused, "writes_per_token", "2 per 2 second")
        time.sleep(retry_after)  # the window's end, as the server announced it
        assert create(http, "alice/after").status_code == 200


@pytest.fixture
def reads_limited(start_node: StartNode) -> RunningNode:
    """A node with a tight read limit per token, and a public repo admin/public (a.txt)."""
    node = start_node(
        "node",
        limits={"reads_per_token": "3/minute", "reads_per_address": "", "writes_per_token": ""},
    )
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/public")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id="admin/public")
    return node


def test_expensive_reads_are_limited_and_cheap_reads_never(reads_limited: RunningNode) -> None:
    node = reads_limited
    (alice,) = make_tokens(node, "alice")
    digest = blake3.blake3(b"hello").hexdigest()
    cheap = [
        ("GET", "/api/models/admin/public"),
        ("GET", "/api/models/admin/public/revision/main"),
        ("GET", "/api/models/admin/public/refs"),
        ("HEAD", "/admin/public/resolve/main/a.txt"),
        ("GET", "/admin/public/resolve/main/a.txt"),
        ("GET", f"/v1/blobs/{digest}"),
        ("GET", "/v1/repos/model/admin/public/manifest/main"),
        ("GET", "/v1/search/status"),
        ("GET", "/api/whoami-v2"),
        ("GET", "/v1/health"),
        ("GET", "/v1/status"),
        ("GET", "/status"),
        ("GET", "/metrics"),
    ]
    with client(node, alice) as http:
        for _ in range(3):
            assert http.get("/v1/search", params={"q": "public"}).status_code == 200
        expensive = [
            http.get("/v1/search", params={"q": "public"}),
            http.get("/api/models", params={"search": "public"}),
            http.get("/api/models/admin/public/tree/main"),
            http.get("/api/models/admin/public/commits/main"),
            http.post("/api/models/admin/public/paths-info/main", data={"paths": ["a.txt"]}),
            http.get("/v1/sync/changes"),
            http.get(f"/v1/files/by-hash/{digest}"),
            http.get("/v1/repos/model/admin/public/lineage"),
        ]
        for response in expensive:
            assert_rate_limited(response, "reads_per_token", "3 per 1 minute")
        for method, url in cheap * 10:
            response = http.request(method, url)
            assert response.status_code == 200, (method, url, response.status_code)
        assert create(http, "alice/model").status_code == 200  # writes have their own budget
    with client(node) as http:  # the address has no read limit here: anonymous reads go on
        assert http.get("/v1/search", params={"q": "public"}).status_code == 200
    assert rejections(node) == {"reads_per_token": float(len(expensive))}


def test_health_and_metrics_are_never_limited(start_node: StartNode) -> None:
    node = start_node(
        "node", limits={"reads_per_address": "1/minute", "writes_per_address": "1/minute"}
    )
    with client(node) as http:
        assert http.get("/v1/search").status_code == 200
        assert http.get("/v1/search").status_code == 429
        assert http.post("/api/repos/create", json={"name": "x"}).status_code == 401
        assert http.post("/api/repos/create", json={"name": "x"}).status_code == 429
        for _ in range(30):
            for url in ("/v1/health", "/metrics", "/status", "/v1/status"):
                assert http.get(url).status_code == 200, url


def test_admin_and_exempt_users_are_never_rate_limited(start_node: StartNode) -> None:
    node = start_node(
        "node",
        limits={
            "writes_per_address": "2/minute",
            "reads_per_address": "2/minute",
            "exempt_users": ["mirror-b"],
        },
    )
    mirror_b, alice = make_tokens(node, "mirror-b", "alice")
    with client(node, node.admin_token) as http:
        assert [create(http, f"admin/r{i}").status_code for i in range(5)] == [200] * 5
        assert all(http.get("/v1/search").status_code == 200 for _ in range(5))
    with client(node, mirror_b) as http:
        assert all(http.get("/v1/sync/changes").status_code == 200 for _ in range(5))
    with client(node, alice) as http:  # exempt requests spent none of the address's budget
        assert [http.get("/v1/sync/changes").status_code for _ in range(3)] == [200, 200, 429]
        assert [create(http, f"alice/r{i}").status_code for i in range(3)] == [200, 200, 429]


def test_exempt_peer_replicates_under_tight_read_limits(start_node: StartNode) -> None:
    """A peer's feed long-polls are expensive reads; listed in exempt_users, it is never
    starved, while anyone else at the same address is limited."""
    home = start_node(
        "home",
        limits={
            "reads_per_address": "2/minute",
            "reads_per_token": "2/minute",
            "exempt_users": ["peer-b"],
        },
    )
    (peer_token,) = make_tokens(home, "peer-b", write=False)
    api = HfApi(endpoint=home.url, token=home.admin_token)
    api.create_repo("admin/shared")
    sha = api.upload_file(
        path_or_fileobj=b"w" * 5000, path_in_repo="w.bin", repo_id="admin/shared"
    ).oid
    replica = start_node("replica", sync=FAST_SYNC)
    with client(replica, replica.admin_token) as http:
        added = http.post("/v1/peers", json={"url": home.url, "token": peer_token})
        assert added.status_code == 201, added.text
        deadline = time.monotonic() + 30
        while home.log.count("GET", "/v1/sync/changes") < 6:  # three times the budget
            assert time.monotonic() < deadline, "the replica stopped pulling"
            time.sleep(0.1)
        peers = http.get("/v1/peers").json()
    assert peers[0]["state"] == "up" and peers[0]["cursor"] == peers[0]["head"], peers
    mirror = HfApi(endpoint=replica.url, token=replica.admin_token)
    assert mirror.model_info("admin/shared").sha == sha
    assert rejections(home) == {}
    with client(home) as http:
        assert [http.get("/v1/sync/changes").status_code for _ in range(3)] == [200, 200, 429]


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
    secret = sized.runtime.identity.secret
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
