"""Errors the client maps to its exception classes; who may write; private means invisible."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import blake3
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


@pytest.fixture
def admin(node: RunningNode) -> HfApi:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/public")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="hello.txt", repo_id="admin/public")
    return api


def test_client_maps_unknown_repo_revision_and_file(
    node: RunningNode, admin: HfApi, tmp_path: Path
) -> None:
    def download(repo: str, path: str, revision: str = "main") -> str:
        return hf_hub_download(
            repo, path, revision=revision, cache_dir=tmp_path / "c", endpoint=node.url
        )

    with pytest.raises(RepositoryNotFoundError):
        admin.model_info("admin/nope")
    with pytest.raises(RepositoryNotFoundError):
        download("admin/nope", "x.txt")
    with pytest.raises(RevisionNotFoundError):
        admin.model_info("admin/public", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        download("admin/public", "hello.txt", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        download("admin/public", "missing.txt")
    assert not admin.file_exists("admin/public", "missing.txt")
    assert not admin.repo_exists("admin/nope")
    assert not admin.revision_exists("admin/public", "no-such-branch")


def test_writes_need_a_token_with_rights(
    node: RunningNode, admin: HfApi, make_token: Callable[..., str]
) -> None:
    bob, reader = make_token("bob"), make_token("carol", write=False)
    commit = "/api/models/admin/public/commit/main"
    headers = {"content-type": "application/x-ndjson"}
    with node.client() as anonymous:
        assert anonymous.post("/api/repos/create", json={"name": "x"}).status_code == 401
        response = anonymous.post(commit, content=commit_body("a.txt", b"a"), headers=headers)
        assert response.status_code == 401
    with node.client(bob) as http:
        taken = http.post("/api/repos/create", json={"name": "x", "organization": "admin"})
        assert taken.status_code == 403
        response = http.post(commit, content=commit_body("a.txt", b"a"), headers=headers)
        assert response.status_code == 403
        assert http.post("/api/repos/create", json={"name": "mine"}).status_code == 200
    with node.client(reader) as http:
        assert http.post("/api/repos/create", json={"name": "x"}).status_code == 403
    assert [f for f in admin.list_repo_files("admin/public")] == [".gitattributes", "hello.txt"]
    assert HfApi(endpoint=node.url, token=bob).whoami()["name"] == "bob"


def test_private_repo_is_invisible_to_others_on_every_route(
    node: RunningNode, make_token: Callable[..., str]
) -> None:
    owner = make_token("olga")
    api = HfApi(endpoint=node.url, token=owner)
    api.create_repo("olga/secret", private=True)
    sha = api.upload_file(path_or_fileobj=SECRET, path_in_repo="w.bin", repo_id="olga/secret").oid
    digest = blake3.blake3(SECRET).hexdigest()
    routes = [
        ("GET", "/api/models/olga/secret", None),
        ("GET", f"/api/models/olga/secret/revision/{sha}", None),
        ("GET", "/api/models/olga/secret/tree/main?recursive=true", None),
        ("POST", "/api/models/olga/secret/paths-info/main", {"data": {"paths": "w.bin"}}),
        ("GET", "/api/models/olga/secret/refs", None),
        ("GET", "/api/models/olga/secret/commits/main", None),
        ("HEAD", "/olga/secret/resolve/main/w.bin", None),
        ("GET", "/olga/secret/resolve/main/w.bin", None),
        ("HEAD", f"/v1/blobs/{digest}", None),
        ("GET", f"/v1/blobs/{digest}", None),
        (
            "POST",
            "/api/models/olga/secret/preupload/main",
            {"json": {"files": [{"path": "a.txt", "size": 1, "sample": ""}]}},
        ),
        (
            "POST",
            "/olga/secret.git/info/lfs/objects/batch",
            {"json": {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}},
        ),
    ]
    for token in (None, make_token("mallory")):
        with node.client(token) as http:
            for method, url, kwargs in routes:
                response = http.request(method, url, **(kwargs or {}))
                assert response.status_code == 404, (token, method, url, response.status_code)
                if not url.startswith("/v1/"):
                    assert response.headers["X-Error-Code"] == "RepoNotFound", url
                assert SECRET not in response.content
            listing = http.get("/api/models").json()
            assert "olga/secret" not in {m["id"] for m in listing}
        assert not HfApi(endpoint=node.url, token=token).repo_exists("olga/secret")
    for token in (owner, node.admin_token):
        with node.client(token) as http:
            for method, url, kwargs in routes[:10]:
                response = http.request(method, url, **(kwargs or {}))
                assert response.status_code in (200, 206), (method, url, response.text)
    assert HfApi(endpoint=node.url, token=owner).repo_exists("olga/secret")
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=node.url).model_info("olga/secret")
