"""Lookup by hash across repos: BLAKE3, SHA-256, AutoV2; privacy respected."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import blake3
import pytest
from huggingface_hub import HfApi

from tests.conftest import RunningNode

WEIGHTS = b"lora weights " * 1000


@pytest.fixture
def holders(node: RunningNode, make_token: Callable[..., str]) -> str:
    owner = make_token("olga")
    admin = HfApi(endpoint=node.url, token=node.admin_token)
    admin.create_repo("admin/base")
    admin.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="w.safetensors", repo_id="admin/base")
    admin.create_tag("admin/base", tag="v1")
    olga = HfApi(endpoint=node.url, token=owner)
    olga.create_repo("olga/copy", private=True)
    olga.upload_file(
        path_or_fileobj=WEIGHTS, path_in_repo="sub/renamed.safetensors", repo_id="olga/copy"
    )
    return owner


@pytest.mark.parametrize("form", ["blake3", "sha256", "autov2", "prefixed", "upper"])
def test_lookup_finds_the_file_in_every_visible_repo(
    node: RunningNode, holders: str, form: str
) -> None:
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    value = {
        "blake3": blake3.blake3(WEIGHTS).hexdigest(),
        "sha256": sha,
        "autov2": sha[:10].upper(),
        "prefixed": f"sha256:{sha}",
        "upper": sha.upper(),
    }[form]
    with node.client(holders) as http:
        owner_sees = http.get(f"/v1/files/by-hash/{value}").json()
    with node.client() as http:
        public_sees = http.get(f"/v1/files/by-hash/{value}").json()
    assert {(h["repo"], h["ref"], h["path"]) for h in owner_sees} == {
        ("admin/base", "refs/heads/main", "w.safetensors"),
        ("admin/base", "refs/tags/v1", "w.safetensors"),
        ("olga/copy", "refs/heads/main", "sub/renamed.safetensors"),
    }
    assert {h["repo"] for h in public_sees} == {"admin/base"}
    assert all(h["sha256"] == sha and h["size"] == len(WEIGHTS) for h in owner_sees)


def test_lookup_of_unknown_and_malformed_hashes(node: RunningNode) -> None:
    with node.client() as http:
        assert http.get(f"/v1/files/by-hash/{'0' * 64}").json() == []
        bad = http.get("/v1/files/by-hash/not-a-hash")
    assert bad.status_code == 400 and bad.headers["X-Error-Code"] == "BadRequest"
