"""Three generations: a merge of two parents, then a LoRA on the merge, both ways."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from huggingface_hub import HfApi

from tests.conftest import RunningNode

PARENT_B_WEIGHTS = b"parent b weights " * 500


def card(front: str) -> bytes:
    return f"---\n{front}\n---\n# card\n".encode()


def test_three_generation_lineage_both_ways(
    node: RunningNode, make_token: Callable[..., str]
) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    for name in ("parent-a", "parent-b", "merge", "lora"):
        api.create_repo(f"admin/{name}")
    api.upload_file(
        path_or_fileobj=PARENT_B_WEIGHTS, path_in_repo="b.safetensors", repo_id="admin/parent-b"
    )
    b_hash = hashlib.sha256(PARENT_B_WEIGHTS).hexdigest()[:10]  # by AutoV2 hash
    merge = (
        "lineage:\n  - {repo: admin/parent-a@main, method: weighted_sum, ratio: 0.6}\n"
        f"  - {{hash: '{b_hash}', method: weighted_sum, ratio: 0.4}}"
    )
    api.upload_file(path_or_fileobj=card(merge), path_in_repo="README.md", repo_id="admin/merge")
    api.upload_file(
        path_or_fileobj=card("base_model: admin/merge\nkind: lora"),
        path_in_repo="README.md",
        repo_id="admin/lora",
    )
    secret = make_token("olga")
    olga = HfApi(endpoint=node.url, token=secret)
    olga.create_repo("olga/hidden-child", private=True)
    olga.upload_file(
        path_or_fileobj=card("base_model: admin/lora"),
        path_in_repo="README.md",
        repo_id="olga/hidden-child",
    )

    with node.client() as http:
        lora = http.get("/v1/repos/model/admin/lora/lineage").json()
        parent_a = http.get("/v1/repos/model/admin/parent-a/lineage").json()
        merged = http.get("/v1/repos/model/admin/merge/lineage").json()
        missing = http.get("/v1/repos/model/admin/nope/lineage")
    assert [(r["repo"], r["depth"]) for r in lora["ancestors"]] == [
        ("admin/merge", 1),
        ("admin/parent-a", 2),
        ("admin/parent-b", 2),
    ]
    assert lora["descendants"] == []  # the private child is not shown to anonymous readers
    assert [(r["repo"], r["depth"]) for r in parent_a["descendants"]] == [
        ("admin/merge", 1),
        ("admin/lora", 2),
    ]
    assert {(p["repo"], p["hash"], p["method"], p["ratio"]) for p in merged["parents"]} == {
        ("admin/parent-a", None, "weighted_sum", 0.6),
        (None, b_hash, "weighted_sum", 0.4),
    }
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"
    with node.client(secret) as http:
        seen_by_owner = http.get("/v1/repos/model/admin/lora/lineage").json()
    assert seen_by_owner["descendants"] == [{"repo": "olga/hidden-child", "depth": 1}]
