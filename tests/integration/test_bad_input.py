"""Bad input: each gets a clear 4xx with a machine-readable code, and nothing changes.

"Nothing changes" is checked on the repo under attack: the head commit of `main`, the refs and
the recursive tree are the same after each refused request, and refused uploads leave no file
in the blob store. The tests share one node (per pytest-xdist worker): starting one for each of
the ~110 cases took most of their time, and each checks its own request before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import blake3
import httpx
import pytest
from huggingface_hub import HfApi

from registry.domain.tokens import sign
from tests.blobs import stored_blob_files, upload_leftovers
from tests.conftest import RunningNode, node_env, running_nodes
from tests.hub import NDJSON, add, header, ndjson
from tests.requestcounts import answered_by_status

REPO = "/api/models/admin/guarded"
LFS_JSON = {"content-type": "application/vnd.git-lfs+json"}


def state(http: httpx.Client) -> tuple[object, ...]:
    """What a refused request must not change: head of main, refs, tree."""
    info = http.get(f"{REPO}/revision/main").json()
    refs = http.get(f"{REPO}/refs").json()
    tree = http.get(f"{REPO}/tree/main", params={"recursive": "true"}).json()
    return info["sha"], json.dumps(refs, sort_keys=True), [(e["path"], e["oid"]) for e in tree]


def request_counts(node: RunningNode, route: str, method: str) -> Counter[str]:
    """The node's request counts for a route, by status class."""
    return answered_by_status(node.url, route=route, method=method)


def answered(
    node: RunningNode, route: str, method: str, total: int, before: Counter[str]
) -> dict[str, int]:
    """The requests to a route answered since `before` (its counts then), by status class, once
    there are `total`.

    A request is counted after its handler finished, so any clean-up it does is done by then
    (the server may close a hung-up connection before the handler even starts).
    """
    deadline = time.monotonic() + 10
    while True:
        since = request_counts(node, route, method) - before
        if since.total() >= total or time.monotonic() > deadline:
            return dict(since)
        time.sleep(0.01)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    root = tmp_path_factory.mktemp("bad-input")
    with pytest.MonkeyPatch.context() as env, running_nodes(root) as start:
        node_env(env)
        yield start("node")


@pytest.fixture(scope="module")
def http(node: RunningNode) -> Iterator[httpx.Client]:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/guarded")
    api.upload_file(path_or_fileobj=b"keep", path_in_repo="keep.txt", repo_id="admin/guarded")
    with node.client(node.admin_token) as client:
        yield client


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["X-Error-Code"] == code, response.headers.get("X-Error-Code")
    body = response.json()
    assert body["code"] == code and body["error"], body
    assert isinstance(body["error"], str) and isinstance(body["detail"], dict), body


@pytest.mark.parametrize(
    "name", ["a--b", "-x", "x-", "x.git", "..", "a..b", "a" * 97, "a b", "ünï", ".x", "a/b"]
)
def test_create_repo_refuses_invalid_names(http: httpx.Client, name: str) -> None:
    before = http.get("/api/models").json()
    assert_refused(http.post("/api/repos/create", json={"name": name}), 400, "InvalidName")
    assert http.get("/api/models").json() == before


@pytest.mark.parametrize("namespace", ["api", "v1", "models", "datasets", "lfs"])
def test_create_repo_refuses_reserved_namespaces(http: httpx.Client, namespace: str) -> None:
    reserved = http.post("/api/repos/create", json={"name": "x", "organization": namespace})
    assert_refused(reserved, 400, "InvalidName")
    assert namespace in reserved.json()["error"]
    assert http.get(f"/api/models/{namespace}/x").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"name": 5}',
        b'{"organization": "admin"}',
        b'{"name": "\xff"}',
    ],
)
def test_create_repo_refuses_malformed_json(http: httpx.Client, body: bytes) -> None:
    before = http.get("/api/models").json()
    response = http.post(
        "/api/repos/create", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert_refused(response, response.status_code, "BadRequest")
    assert http.get("/api/models").json() == before


@pytest.mark.parametrize(
    "branch",
    [
        "%2E%2E",
        "a b",
        "a..b",
        "x/",
        "x.lock",
        "-x",
        "a~1",
        "a:b",
        "0123456789abcdef0123456789abcdef01234567",
        "refs%2Fx",
        "refs%2Fheads%2Fx",
    ],
)
def test_create_branch_refuses_invalid_names(http: httpx.Client, branch: str) -> None:
    before = state(http)
    assert_refused(http.post(f"{REPO}/branch/{branch}", json={}), 400, "InvalidRevision")
    assert state(http) == before


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../../x",
        "/abs",
        "a\\b",
        "a\x00b",
        ".git/config",
        "x/.git/y",
        "./x",
        "a//b",
        "C:/x",
        "x/.cache/y",
        "",
    ],
)
def test_commit_refuses_path_traversal(http: httpx.Client, path: str) -> None:
    before = state(http)
    response = http.post(f"{REPO}/commit/main", content=ndjson(header(), add(path)), headers=NDJSON)
    assert_refused(response, 422, "InvalidPath")
    assert state(http) == before


@pytest.mark.parametrize("path", ["../keep.txt", "/keep.txt", "a\\b"])
def test_commit_refuses_path_traversal_in_deletions(http: httpx.Client, path: str) -> None:
    before = state(http)
    deletion = {"key": "deletedFile", "value": {"path": path}}
    response = http.post(f"{REPO}/commit/main", content=ndjson(header(), deletion), headers=NDJSON)
    assert_refused(response, 422, "InvalidPath")
    assert state(http) == before


def test_commit_refuses_deleting_a_missing_file_with_404(http: httpx.Client) -> None:
    before = state(http)
    delete = http.post(
        f"{REPO}/commit/main",
        headers=NDJSON,
        content=ndjson(
            header(), add("new.txt"), {"key": "deletedFile", "value": {"path": "nope.txt"}}
        ),
    )
    assert_refused(delete, 404, "EntryNotFound")
    assert "nope.txt" in delete.json()["error"]
    assert state(http) == before


def test_commit_refuses_lfs_object_never_uploaded(http: httpx.Client) -> None:
    before = state(http)
    lfs = http.post(
        f"{REPO}/commit/main",
        headers=NDJSON,
        content=ndjson(
            header(),
            add("also-new.txt"),
            {
                "key": "lfsFile",
                "value": {
                    "path": "w.bin",
                    "algo": "sha256",
                    "oid": hashlib.sha256(os.urandom(32)).hexdigest(),
                    "size": 5,
                },
            },
        ),
    )
    assert_refused(lfs, 400, "MissingObject")
    assert state(http) == before


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"\xff\xfe",
        ndjson({"value": {"summary": "no key"}}),
        ndjson({"key": "header"}),
        ndjson({"key": "header", "value": "not an object"}),
        ndjson([1, 2]),
        ndjson(add("a.txt")),  # no header line
        ndjson(header(""), add("a.txt")),  # empty summary
        ndjson(header("   "), add("a.txt")),  # blank summary
        ndjson(header({"text": "x"}), add("a.txt")),  # summary not a string
        ndjson(header(), {"key": "copyFile", "value": {"path": "a.txt"}}),
        ndjson(header(), {"key": "file", "value": {"path": "a.txt", "content": "%%%notbase64"}}),
        ndjson(header(), {"key": "file", "value": {"path": "a.txt", "content": 5}}),
        ndjson(header(), {"key": "lfsFile", "value": {"path": "a.bin", "oid": "xyz", "size": 1}}),
        ndjson(
            header(), {"key": "lfsFile", "value": {"path": "a.bin", "oid": "a" * 64, "size": -1}}
        ),
        ndjson(header(), {"key": "file", "value": {"path": 5, "content": ""}}),
    ],
)
def test_commit_refuses_malformed_ndjson(http: httpx.Client, body: bytes) -> None:
    before = state(http)
    assert_refused(
        http.post(f"{REPO}/commit/main", content=body, headers=NDJSON), 400, "BadRequest"
    )
    assert state(http) == before


def test_commit_refuses_stale_parent_with_412(http: httpx.Client) -> None:
    before = state(http)
    old = http.get(f"{REPO}/commits/main").json()[-1]["id"]  # the initial commit
    assert old != before[0]
    for parent in (old, old[:7], "0" * 40):
        stale = {"key": "header", "value": {"summary": "late", "parentCommit": parent}}
        response = http.post(
            f"{REPO}/commit/main", content=ndjson(stale, add("a.txt")), headers=NDJSON
        )
        assert_refused(response, 412, "ParentMismatch")
        assert state(http) == before


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", f"{REPO}/revision/nope"),
        ("GET", f"{REPO}/revision/{'f' * 40}"),
        ("GET", f"{REPO}/revision/refs%2Fheads%2Fnope"),
        ("GET", f"{REPO}/tree/nope"),
        ("GET", f"{REPO}/commits/nope"),
        ("POST", f"{REPO}/paths-info/nope"),
        ("GET", "/admin/guarded/resolve/nope/keep.txt"),
        ("HEAD", "/admin/guarded/resolve/nope/keep.txt"),
    ],
)
def test_unknown_revisions_are_404_revision_not_found(
    http: httpx.Client, method: str, url: str
) -> None:
    response = http.request(method, url, data={"paths": "keep.txt"} if method == "POST" else None)
    assert response.status_code == 404
    assert response.headers["X-Error-Code"] == "RevisionNotFound"
    if method != "HEAD":
        assert_refused(response, 404, "RevisionNotFound")
        assert "nope" in response.json()["error"] or "f" * 40 in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", f"{REPO}/revision/%ff"),
        ("GET", f"{REPO}/tree/main/%C3"),
        ("HEAD", "/admin/guarded/resolve/main/%ff"),
        ("GET", "/admin/guarded/resolve/%ff/keep.txt"),
        ("POST", f"{REPO}/branch/%ff"),
        ("POST", f"{REPO}/commit/%ff"),
    ],
)
def test_urls_with_invalid_percent_encoding_are_400(
    http: httpx.Client, method: str, url: str
) -> None:
    before = state(http)
    response = http.request(method, url)
    assert response.status_code == 400
    assert response.headers["X-Error-Code"] == "BadRequest"
    if method != "HEAD":
        assert_refused(response, 400, "BadRequest")
    assert state(http) == before


def oversized_preupload() -> bytes:
    files = [{"path": f"f{i}.txt", "size": 1, "sample": "x" * 100} for i in range(20_000)]
    body = json.dumps({"files": files}).encode()
    assert len(body) > 1024 * 1024
    return body


def test_oversized_json_body_is_413(http: httpx.Client) -> None:
    before = state(http)
    response = http.post(
        f"{REPO}/preupload/main",
        content=oversized_preupload(),
        headers={"content-type": "application/json"},
    )
    assert_refused(response, 413, "PayloadTooLarge")
    batch = http.post(
        "/admin/guarded.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}] * 20_000},
        headers=LFS_JSON,
    )
    assert_refused(batch, 413, "PayloadTooLarge")
    assert state(http) == before


def test_oversized_json_body_is_413_when_sent_chunked(http: httpx.Client) -> None:
    """Without a Content-Length the cap applies while reading, with the same answer."""
    before = state(http)
    body = oversized_preupload()
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    response = http.post(
        f"{REPO}/preupload/main", content=chunks, headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "PayloadTooLarge")
    create = http.post(
        "/api/repos/create",
        content=iter([b'{"name": "', b"a" * (2 * 1024 * 1024), b'"}']),
        headers={"content-type": "application/json"},
    )
    assert_refused(create, 413, "PayloadTooLarge")
    assert state(http) == before


def test_huge_header_is_refused_with_431(node: RunningNode) -> None:
    with node.client() as client:
        for size in (100_000, 200_000):
            response = client.get("/v1/health", headers={"x-big": "a" * size})
            assert_refused(response, 431, "HeadersTooLarge")
        assert client.get("/v1/health", headers={"x-ok": "a" * 1000}).status_code == 200


def lfs_batch(http: httpx.Client, data: bytes) -> dict[str, object]:
    oid = hashlib.sha256(data).hexdigest()
    response = http.post(
        "/admin/guarded.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": len(data)}],
        },
        headers=LFS_JSON,
    )
    assert response.status_code == 200, response.text
    obj: dict[str, object] = response.json()["objects"][0]
    assert obj["oid"] == oid
    return obj


def upload_href(http: httpx.Client, data: bytes) -> str:
    """The signed upload URL; its presence means the server still needs the object."""
    actions = lfs_batch(http, data).get("actions")
    assert isinstance(actions, dict) and "upload" in actions, actions
    href: str = actions["upload"]["href"]
    return href


def send_truncated(url: str, target: str, declared: int, sent: bytes, token: str | None) -> None:
    """Send a PUT whose body is shorter than its Content-Length, then hang up."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"PUT {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}Content-Length: {declared}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + sent)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def test_lfs_put_refuses_wrong_bytes_and_wrong_sizes(node: RunningNode, http: httpx.Client) -> None:
    before, files = state(http), stored_blob_files(node.settings)
    puts = request_counts(node, "/lfs/objects/{oid}", "PUT")
    data = os.urandom(100_000)
    href = upload_href(http, data)
    assert_refused(httpx.put(href, content=os.urandom(100_000)), 400, "DigestMismatch")
    assert_refused(httpx.put(href, content=data + b"x"), 400, "SizeMismatch")
    assert_refused(httpx.put(href, content=data[:-1]), 400, "SizeMismatch")
    assert_refused(httpx.put(href, content=b""), 400, "SizeMismatch")
    parts = urlsplit(href)
    send_truncated(node.url, f"{parts.path}?{parts.query}", len(data), data[:5000], None)
    assert answered(node, "/lfs/objects/{oid}", "PUT", 5, puts) == {"4xx": 5}
    assert not upload_leftovers(node.settings)
    assert stored_blob_files(node.settings) == files
    assert upload_href(http, data)  # still needed: nothing was stored
    oid = hashlib.sha256(data).hexdigest()
    verify = http.post(f"/lfs/verify/{oid}", json={"oid": oid, "size": len(data)})
    assert_refused(verify, 400, "MissingObject")
    assert state(http) == before
    # The same URL still works with the right bytes, and then the object is known.
    assert httpx.put(href, content=data).status_code == 200
    assert http.post(f"/lfs/verify/{oid}", json={"oid": oid, "size": len(data)}).status_code == 200
    assert "actions" not in lfs_batch(http, data)


def test_lfs_put_refuses_tampered_or_expired_signatures_with_401(
    node: RunningNode, http: httpx.Client
) -> None:
    files = stored_blob_files(node.settings)
    data = os.urandom(10_000)
    href = upload_href(http, data)
    query = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
    base = href.split("?", 1)[0]
    oid = hashlib.sha256(data).hexdigest()
    secret = node.runtime.identity.secret
    expired_at = str(int(time.time()) - 60)
    attempts = [
        {**query, "sig": ("1" if query["sig"][0] == "0" else "0") + query["sig"][1:]},
        {**query, "sig": ""},
        {**query, "size": str(len(data) + 1)},  # size not covered by the signature
        {**query, "expires": str(int(query["expires"]) + 3600)},  # extended by hand
        {**query, "expires": expired_at, "sig": sign(secret, oid, str(len(data)), expired_at)},
    ]
    for params in attempts:
        response = httpx.put(base, params=params, content=data)
        assert_refused(response, 401, "Unauthorized")
    other = hashlib.sha256(b"other").hexdigest()
    response = httpx.put(href.replace(oid, other), content=b"other")  # signed for another oid
    assert_refused(response, 401, "Unauthorized")
    assert stored_blob_files(node.settings) == files
    assert upload_href(http, data)


def test_blob_put_refuses_body_with_wrong_hash(node: RunningNode, http: httpx.Client) -> None:
    files = stored_blob_files(node.settings)
    data = os.urandom(300_000)
    digest = blake3.blake3(data).hexdigest()
    assert_refused(
        http.put(f"/v1/blobs/{digest}", content=os.urandom(300_000)), 400, "DigestMismatch"
    )
    assert_refused(http.put("/v1/blobs/not-a-digest", content=b"x"), 400, "BadRequest")
    assert_refused(http.get(f"/v1/blobs/{digest}"), 404, "BlobNotFound")
    assert stored_blob_files(node.settings) == files
    assert not upload_leftovers(node.settings)


def test_blob_put_stores_nothing_when_body_is_truncated(
    node: RunningNode, http: httpx.Client
) -> None:
    files = stored_blob_files(node.settings)
    puts = request_counts(node, "/v1/blobs/{blake3}", "PUT")
    data = os.urandom(300_000)
    digest = blake3.blake3(data).hexdigest()
    send_truncated(node.url, f"/v1/blobs/{digest}", len(data), data[:1000], node.admin_token)
    assert answered(node, "/v1/blobs/{blake3}", "PUT", 1, puts) == {"4xx": 1}  # client error
    assert not upload_leftovers(node.settings)
    assert http.head(f"/v1/blobs/{digest}").status_code == 404
    assert_refused(http.get(f"/v1/blobs/{digest}"), 404, "BlobNotFound")
    assert stored_blob_files(node.settings) == files
    assert not [key for key in stored_blob_files(node.settings) if key.endswith(digest)]
    # The complete body is then accepted and served.
    assert http.put(f"/v1/blobs/{digest}", content=data).status_code == 201
    assert http.get(f"/v1/blobs/{digest}").content == data


# Found by fuzzing (tests/integration/test_fuzz.py): each was a 5xx, a dropped connection or an
# answer without a machine-readable code.


@pytest.mark.parametrize(("method", "url"), [("TRACE", "/v1/health"), ("PUT", "/v1/search")])
def test_unsupported_methods_are_405_naming_the_allowed_ones(
    http: httpx.Client, method: str, url: str
) -> None:
    response = http.request(method, url)
    assert_refused(response, 405, "MethodNotAllowed")
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("oid", ["%0A", "%1F", "x%0D%0AX-Injected:%20yes", "%7F"])
def test_control_characters_echoed_in_an_error_still_get_an_answer(
    http: httpx.Client, oid: str
) -> None:
    """They used to end in the error header, which the server refused to send: no answer."""
    response = http.post(f"/lfs/verify/{oid}", json={"oid": "x", "size": 1})
    assert_refused(response, 400, "MissingObject")
    assert "X-Injected" not in response.headers
    assert all(32 <= ord(c) != 127 for c in response.headers["X-Error-Message"])


@pytest.mark.parametrize("sig", ["é", "\u2603" * 64])
def test_lfs_put_refuses_non_ascii_signatures_with_401(
    node: RunningNode, http: httpx.Client, sig: str
) -> None:
    files = stored_blob_files(node.settings)
    href = upload_href(http, b"signed")
    params = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
    response = httpx.put(href.split("?", 1)[0], params={**params, "sig": sig}, content=b"signed")
    assert_refused(response, 401, "Unauthorized")
    assert stored_blob_files(node.settings) == files


DOWNLOADS = [
    "/admin/guarded/resolve/main/keep.txt",
    f"/v1/blobs/{blake3.blake3(b'keep').hexdigest()}",
]


def get_range(http: httpx.Client, url: str, range_: str) -> httpx.Response:
    return http.get(url, headers={b"range": range_.encode("latin-1")})


@pytest.mark.parametrize("range_", ["bytes=abc", "bytes=3-1", "bytes=²-", "bytes=", "bytes=1-2,x"])
def test_malformed_ranges_are_400(http: httpx.Client, range_: str) -> None:
    for url in DOWNLOADS:
        assert_refused(get_range(http, url, range_), 400, "BadRequest")


@pytest.mark.parametrize("range_", ["bytes=4-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges_are_416_with_the_size(http: httpx.Client, range_: str) -> None:
    for url in DOWNLOADS:
        response = get_range(http, url, range_)
        assert_refused(response, 416, "RangeNotSatisfiable")
        assert response.headers["Content-Range"] == "bytes */4"


@pytest.mark.parametrize(
    ("range_", "body"), [("bytes=1-2", b"ee"), ("bytes=-1", b"p"), ("bytes=2-999", b"ep")]
)
def test_single_ranges_are_served(http: httpx.Client, range_: str, body: bytes) -> None:
    for url in DOWNLOADS:
        response = get_range(http, url, range_)
        assert (response.status_code, response.content) == (206, body), url


@pytest.mark.parametrize("range_", ["bytes=0-0,2-3", "items=0-1"])
def test_several_ranges_or_an_unknown_unit_get_the_whole_file(
    http: httpx.Client, range_: str
) -> None:
    """RFC 9110 lets a server ignore them. A node with its blobs in S3 redirects there, and
    what S3 does with the header is its own affair."""
    for url in DOWNLOADS:
        response = http.get(url, headers={"range": range_}, follow_redirects=False)
        assert response.status_code in (200, 302), (url, response.text)
        if response.status_code == 200:
            assert response.content == b"keep"
