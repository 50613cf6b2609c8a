"""Bad input: each gets a clear 4xx with a machine-readable code, and nothing changes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

from tests.conftest import RunningNode

REPO = "/api/models/admin/guarded"
NDJSON = {"content-type": "application/x-ndjson"}


def ndjson(*lines: object) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def header(summary: str = "change") -> dict[str, object]:
    return {"key": "header", "value": {"summary": summary}}


def add(path: str, data: bytes = b"x") -> dict[str, object]:
    return {
        "key": "file",
        "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()},
    }


def state(http: httpx.Client) -> tuple[object, ...]:
    info = http.get(f"{REPO}/revision/main").json()
    refs = http.get(f"{REPO}/refs").json()
    tree = http.get(f"{REPO}/tree/main", params={"recursive": "true"}).json()
    return info["sha"], json.dumps(refs, sort_keys=True), [e["path"] for e in tree]


@pytest.fixture
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


@pytest.mark.parametrize(
    "name", ["a--b", "-x", "x-", "x.git", "..", "a..b", "a" * 97, "a b", "ünï"]
)
def test_create_repo_refuses_invalid_names(http: httpx.Client, name: str) -> None:
    before = http.get("/api/models").json()
    assert_refused(http.post("/api/repos/create", json={"name": name}), 400, "InvalidName")
    assert http.get("/api/models").json() == before


def test_create_repo_refuses_reserved_namespace_and_bad_json(http: httpx.Client) -> None:
    reserved = http.post("/api/repos/create", json={"name": "x", "organization": "api"})
    assert_refused(reserved, 400, "InvalidName")
    malformed = http.post(
        "/api/repos/create", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_refused(malformed, 422, "BadRequest")


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
    assert_refused(response, 400, "InvalidPath" if path else "InvalidPath")
    assert state(http) == before


def test_commit_refuses_missing_file_deletion_and_unknown_lfs_object(http: httpx.Client) -> None:
    before = state(http)
    delete = http.post(
        f"{REPO}/commit/main",
        headers=NDJSON,
        content=ndjson(
            header(), add("new.txt"), {"key": "deletedFile", "value": {"path": "nope.txt"}}
        ),
    )
    assert_refused(delete, 404, "EntryNotFound")
    assert "A file with this name doesn't exist" in delete.json()["error"]
    lfs = http.post(
        f"{REPO}/commit/main",
        headers=NDJSON,
        content=ndjson(
            header(),
            {
                "key": "lfsFile",
                "value": {
                    "path": "w.bin",
                    "algo": "sha256",
                    "oid": hashlib.sha256(b"never").hexdigest(),
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
        ndjson({"value": {"summary": "no key"}}),
        ndjson({"key": "header", "value": "not an object"}),
        ndjson(add("a.txt")),  # no header line
        ndjson(header(""), add("a.txt")),  # empty summary
        ndjson(header(), {"key": "copyFile", "value": {"path": "a.txt"}}),
        ndjson(header(), {"key": "file", "value": {"path": "a.txt", "content": "%%%notbase64"}}),
        ndjson(header(), {"key": "lfsFile", "value": {"path": "a.bin", "oid": "xyz", "size": 1}}),
        ndjson(header(), {"key": "file", "value": {"path": 5, "content": ""}}),
    ],
)
def test_commit_refuses_malformed_ndjson(http: httpx.Client, body: bytes) -> None:
    before = state(http)
    assert_refused(
        http.post(f"{REPO}/commit/main", content=body, headers=NDJSON), 400, "BadRequest"
    )
    assert state(http) == before


def test_commit_with_stale_parent_is_refused(http: httpx.Client) -> None:
    before = state(http)
    stale = {"key": "header", "value": {"summary": "late", "parentCommit": "0" * 40}}
    response = http.post(f"{REPO}/commit/main", content=ndjson(stale, add("a.txt")), headers=NDJSON)
    assert_refused(response, 412, "ParentMismatch")
    assert state(http) == before


@pytest.mark.parametrize(
    "url",
    [
        f"{REPO}/revision/nope",
        f"{REPO}/tree/nope",
        f"{REPO}/commits/nope",
        "/admin/guarded/resolve/nope/keep.txt",
        f"{REPO}/revision/{'f' * 40}",
    ],
)
def test_unknown_revisions_are_404_revision_not_found(http: httpx.Client, url: str) -> None:
    response = http.request("HEAD" if "/resolve/" in url else "GET", url)
    assert response.status_code == 404
    assert response.headers["X-Error-Code"] == "RevisionNotFound"


def test_oversized_json_body_is_413(http: httpx.Client) -> None:
    files = [{"path": f"f{i}.txt", "size": 1, "sample": "x" * 100} for i in range(20_000)]
    response = http.post(f"{REPO}/preupload/main", json={"files": files})
    assert_refused(response, 413, "PayloadTooLarge")


def test_huge_header_is_refused_with_431(node: RunningNode) -> None:
    with node.client() as client:
        response = client.get("/v1/health", headers={"x-big": "a" * 200_000})
        assert_refused(response, 431, "HeadersTooLarge")
        assert client.get("/v1/health", headers={"x-ok": "a" * 1000}).status_code == 200


def lfs_href(http: httpx.Client, data: bytes) -> tuple[str, str]:
    oid = hashlib.sha256(data).hexdigest()
    batch = http.post(
        "/admin/guarded.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": len(data)}],
        },
        headers={"content-type": "application/vnd.git-lfs+json"},
    ).json()
    return oid, batch["objects"][0]["actions"]["upload"]["href"]


def test_lfs_put_with_wrong_bytes_or_size_stores_nothing(http: httpx.Client) -> None:
    data = os.urandom(100_000)
    oid, href = lfs_href(http, data)
    wrong = httpx.put(href, content=os.urandom(100_000))
    assert_refused(wrong, 400, "DigestMismatch")
    longer = httpx.put(href, content=data + b"x")
    assert_refused(longer, 400, "SizeMismatch")
    _, again = lfs_href(http, data)  # still needs uploading: nothing was stored
    assert again
    forged = href.replace("sig=", "sig=0")
    assert_refused(httpx.put(forged, content=data), 401, "Unauthorized")
    expired = href.replace("expires=", "expires=1")
    assert_refused(httpx.put(expired, content=data), 401, "Unauthorized")
    assert httpx.put(href, content=data).status_code == 200
    assert http.post(f"/lfs/verify/{oid}", json={"oid": oid, "size": len(data)}).status_code == 200


def truncated_put(url: str, path: str, token: str, declared: int, sent: bytes) -> None:
    """Send a request whose body is shorter than its Content-Length, then hang up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def test_blob_put_refuses_wrong_hash_and_truncated_bodies(
    node: RunningNode, http: httpx.Client
) -> None:
    import blake3

    data = os.urandom(300_000)
    digest = blake3.blake3(data).hexdigest()
    wrong = http.put(f"/v1/blobs/{digest}", content=os.urandom(300_000))
    assert_refused(wrong, 400, "DigestMismatch")
    truncated_put(node.url, f"/v1/blobs/{digest}", node.admin_token, len(data), data[:1000])
    assert http.head(f"/v1/blobs/{digest}").status_code == 404
    store = node.settings.blob_dir
    assert not [p for p in (store / "blobs").rglob(digest)]
    assert not [p for p in (store / "uploads").iterdir()]
    assert_refused(http.put("/v1/blobs/not-a-digest", content=b"x"), 400, "BadRequest")
    assert http.put(f"/v1/blobs/{digest}", content=data).status_code == 201
