"""Errors the client maps to its exception classes; who may write; private means invisible.

Through the real huggingface_hub client wherever it exposes the behaviour, and raw httpx
where it hides status codes (or refuses to send a write without a token at all).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.conftest import RunningNode

SECRET = b"private weights"
NDJSON = {"content-type": "application/x-ndjson"}
Request = tuple[str, str, dict[str, Any]]


def commit_body(path: str, data: bytes) -> bytes:
    lines = [
        {"key": "header", "value": {"summary": "try"}},
        {
            "key": "file",
            "value": {
                "path": path,
                "encoding": "base64",
                "content": base64.b64encode(data).decode(),
            },
        },
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def write_requests(repo: str) -> list[Request]:
    """One request per write route of the HF API, aimed at `repo` (namespace/name)."""
    namespace, name = repo.split("/")
    api = f"/api/models/{repo}"
    return [
        ("POST", f"{api}/commit/main", {"content": commit_body("a.txt", b"a"), "headers": NDJSON}),
        (
            "POST",
            f"{api}/preupload/main",
            {"json": {"files": [{"path": "a.txt", "size": 1, "sample": ""}]}},
        ),
        (  # for a branch (without `ref`, for a pull request: any contributor may upload)
            "POST",
            f"/{repo}.git/info/lfs/objects/batch",
            {
                "json": {
                    "operation": "upload",
                    "ref": {"name": "refs/heads/main"},
                    "objects": [{"oid": "a" * 64, "size": 1}],
                }
            },
        ),
        ("POST", f"{api}/branch/dev", {"json": {}}),
        ("POST", f"{api}/tag/main", {"json": {"tag": "v1"}}),
        ("DELETE", f"{api}/branch/main", {}),
        ("DELETE", "/api/repos/delete", {"json": {"name": name, "organization": namespace}}),
    ]


def refs_and_files(api: HfApi, repo: str) -> tuple[str, list[str]]:
    refs = api.list_repo_refs(repo)
    return repr((refs.branches, refs.tags)), api.list_repo_files(repo)


@pytest.fixture
def admin(node: RunningNode) -> HfApi:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/public")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="hello.txt", repo_id="admin/public")
    return api


def test_hf_client_raises_repository_not_found_when_repo_unknown(
    node: RunningNode, admin: HfApi, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError):
        admin.model_info("admin/nope")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("admin/nope", "x.txt", cache_dir=tmp_path / "c", endpoint=node.url)
    assert not admin.repo_exists("admin/nope")
    assert not admin.file_exists("admin/nope", "hello.txt")


def test_hf_client_raises_revision_not_found_when_revision_unknown(
    node: RunningNode, admin: HfApi, tmp_path: Path
) -> None:
    with pytest.raises(RevisionNotFoundError):
        admin.model_info("admin/public", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            "admin/public",
            "hello.txt",
            revision="no-such-branch",
            cache_dir=tmp_path / "c",
            endpoint=node.url,
        )
    assert not admin.revision_exists("admin/public", "no-such-branch")
    assert admin.revision_exists("admin/public", "main")


def test_hf_client_raises_entry_not_found_when_file_missing(
    node: RunningNode, admin: HfApi, tmp_path: Path
) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("admin/public", "missing.txt", cache_dir=tmp_path / "c", endpoint=node.url)
    assert not admin.file_exists("admin/public", "missing.txt")
    assert admin.file_exists("admin/public", "hello.txt")
    path = hf_hub_download("admin/public", "hello.txt", cache_dir=tmp_path / "c", endpoint=node.url)
    assert Path(path).read_bytes() == b"hello"


@pytest.mark.parametrize("index", range(7))
def test_write_routes_refuse_anonymous_with_401(
    node: RunningNode, admin: HfApi, index: int
) -> None:
    before = refs_and_files(admin, "admin/public")
    method, url, kwargs = write_requests("admin/public")[index]
    with node.client() as anonymous:
        response = anonymous.request(method, url, **kwargs)
    assert response.status_code == 401, (url, response.text)
    assert response.headers["X-Error-Code"] == "Unauthorized"
    assert refs_and_files(admin, "admin/public") == before


def test_create_repo_refuses_anonymous_and_unknown_tokens_with_401(
    node: RunningNode, admin: HfApi
) -> None:
    with node.client() as anonymous:
        response = anonymous.post("/api/repos/create", json={"name": "x", "organization": "admin"})
        assert response.status_code == 401
        assert anonymous.post("/api/repos/create", json={"name": "x"}).status_code == 401
    with node.client("myd_not_a_token") as forged:
        response = forged.post("/api/repos/create", json={"name": "x", "organization": "admin"})
        assert response.status_code == 401
        assert response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert not admin.repo_exists("admin/x")


@pytest.mark.parametrize("index", range(7))
def test_write_routes_refuse_other_users_token_with_403(
    node: RunningNode, admin: HfApi, make_token: Callable[..., str], index: int
) -> None:
    before = refs_and_files(admin, "admin/public")
    method, url, kwargs = write_requests("admin/public")[index]
    with node.client(make_token("bob")) as bob:
        response = bob.request(method, url, **kwargs)
    assert response.status_code == 403, (url, response.text)
    assert response.headers["X-Error-Code"] == "Forbidden"
    assert refs_and_files(admin, "admin/public") == before


def test_create_repo_refuses_other_users_namespace_with_403(
    node: RunningNode, admin: HfApi, make_token: Callable[..., str]
) -> None:
    bob = make_token("bob")
    with node.client(bob) as http:
        taken = http.post("/api/repos/create", json={"name": "x", "organization": "admin"})
        assert taken.status_code == 403
        assert taken.headers["X-Error-Code"] == "Forbidden"
        assert http.post("/api/repos/create", json={"name": "mine"}).status_code == 200
    assert not admin.repo_exists("admin/x")
    bob_api = HfApi(endpoint=node.url, token=bob)
    assert bob_api.whoami()["name"] == "bob"
    with pytest.raises(HfHubHTTPError) as refused:
        bob_api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="admin/public")
    assert refused.value.response.status_code == 403
    assert admin.list_repo_files("admin/public") == [".gitattributes", "hello.txt"]


def test_read_only_token_cannot_write_its_own_namespace(
    node: RunningNode, admin: HfApi, make_token: Callable[..., str]
) -> None:
    reader = make_token("carol", write=False)
    admin.create_repo("carol/own")  # the admin may create it for her
    before = refs_and_files(admin, "carol/own")
    with node.client(reader) as http:
        created = http.post("/api/repos/create", json={"name": "x"})
        assert created.status_code == 403
        assert created.headers["X-Error-Code"] == "Forbidden"
        for method, url, kwargs in write_requests("carol/own"):
            response = http.request(method, url, **kwargs)
            assert response.status_code == 403, (url, response.text)
        assert http.get("/api/models/carol/own").status_code == 200  # reading is fine
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=node.url, token=reader).upload_file(
            path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="carol/own"
        )
    assert refused.value.response.status_code == 403
    assert not admin.repo_exists("carol/x")
    assert refs_and_files(admin, "carol/own") == before


def private_repo_requests(repo: str, sha: str, digest: str) -> list[Request]:
    api = f"/api/models/{repo}"
    return [
        ("GET", api, {}),
        ("GET", f"{api}?blobs=true", {}),
        ("GET", f"{api}/revision/main", {}),
        ("GET", f"{api}/revision/{sha}", {}),
        ("GET", f"{api}/revision/{sha[:7]}", {}),
        ("GET", f"{api}/tree/main", {"params": {"recursive": "true", "expand": "true"}}),
        ("POST", f"{api}/paths-info/main", {"data": {"paths": "w.bin"}}),
        ("GET", f"{api}/refs", {}),
        ("GET", f"{api}/commits/main", {}),
        ("HEAD", f"/{repo}/resolve/main/w.bin", {}),
        ("HEAD", f"/{repo}/resolve/{sha}/w.bin", {}),
        ("GET", f"/{repo}/resolve/main/w.bin", {}),
        ("GET", f"/{repo}/resolve/main/w.bin", {"headers": {"range": "bytes=0-3"}}),
        ("HEAD", f"/v1/blobs/{digest}", {}),
        ("GET", f"/v1/blobs/{digest}", {}),
        (
            "POST",
            f"{api}/preupload/main",
            {"json": {"files": [{"path": "a.txt", "size": 1, "sample": ""}]}},
        ),
        (
            "POST",
            f"/{repo}.git/info/lfs/objects/batch",
            {"json": {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}},
        ),
    ]


def send(http: httpx.Client, request: Request, repo: str | None = None) -> httpx.Response:
    method, url, kwargs = request
    if repo is not None:
        url = url.replace("olga/secret", repo)
    return http.request(method, url, **kwargs)


def test_private_repo_is_invisible_to_others_on_every_route(
    node: RunningNode, make_token: Callable[..., str], tmp_path: Path
) -> None:
    owner = make_token("olga")
    api = HfApi(endpoint=node.url, token=owner)
    api.create_repo("olga/secret", private=True)
    sha = api.upload_file(path_or_fileobj=SECRET, path_in_repo="w.bin", repo_id="olga/secret").oid
    digest = blake3.blake3(SECRET).hexdigest()  # held by this private repo only
    requests = private_repo_requests("olga/secret", sha, digest)
    # The owner and the admin see it on every route (this also warms the read caches, which
    # must not leak it to anyone else afterwards).
    readers: list[str | None] = [owner, node.admin_token]
    for token in readers:
        with node.client(token) as http:
            for request in requests:
                response = send(http, request)
                assert response.status_code in (200, 206), (request, response.text)
            listing = http.get("/api/models").json()
            assert "olga/secret" in {m["id"] for m in listing}
        assert HfApi(endpoint=node.url, token=token).repo_exists("olga/secret")
    for token in (None, make_token("mallory")):
        with node.client(token) as http:
            for request in requests:
                response = send(http, request)
                assert response.status_code == 404, (token, request, response.status_code)
                assert SECRET not in response.content
                # Indistinguishable from something that never existed.
                if "/v1/blobs/" in request[1]:
                    assert response.headers["X-Error-Code"] == "BlobNotFound"
                    absent = http.request(request[0], f"/v1/blobs/{'0' * 64}")
                else:
                    assert response.headers["X-Error-Code"] == "RepoNotFound", request
                    absent = send(http, request, "olga/never")
                assert absent.status_code == 404
                assert absent.headers["X-Error-Code"] == response.headers["X-Error-Code"]
                if request[0] != "HEAD":
                    message = response.json()["error"].replace(digest, "0" * 64)
                    assert message == absent.json()["error"]
            for query in ({}, {"author": "olga"}, {"search": "secret"}):
                listing = http.get("/api/models", params=query).json()
                assert "olga/secret" not in {m["id"] for m in listing}
        others = HfApi(endpoint=node.url, token=token)
        assert not others.repo_exists("olga/secret")
        assert not others.file_exists("olga/secret", "w.bin")
        with pytest.raises(RepositoryNotFoundError):
            others.model_info("olga/secret")
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                "olga/secret",
                "w.bin",
                token=token,
                cache_dir=tmp_path / f"cache-{token}",
                endpoint=node.url,
            )
        assert "olga/secret" not in {m.id for m in others.list_models(author="olga")}
    assert api.list_repo_files("olga/secret") == [".gitattributes", "w.bin"]
