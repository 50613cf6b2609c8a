"""Three generations: a merge of two parents, then a LoRA on the merge, both ways."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
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


def test_documents_an_older_node_made_are_made_again_with_parent_tags(
    start_node: Callable[..., RunningNode],
) -> None:
    """A node upgraded from before `parent:` tags finds a model's children once idle."""
    from dataclasses import replace

    from registry.service.indexer import DOC_FORMAT, FORMAT_KEY, REFORMAT_KEY

    node = start_node("old", index={"enabled": False})  # this test drives the indexer
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/base")
    api.create_repo("admin/child")
    card = b"---\nbase_model: admin/base\n---\n# child\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="admin/child")
    runtime = node.runtime
    while runtime.indexer.run_once():
        pass
    with runtime.db.read() as tx:  # the documents as an older node made them
        sources = tx.search.sources(tx.search.indexed_after(0, 10))
    old = [
        replace(d, tags=tuple(t for t in d.tags if not t.startswith("parent:"))).with_words()
        for d in runtime.docs.build(sources)
    ]
    with runtime.db.write() as tx:
        tx.search.put(old)
        tx.values.put(FORMAT_KEY, "1")
        tx.values.put(REFORMAT_KEY, "0")
    children = f"{node.url}/api/models?filter=parent:admin/base"

    def found() -> list[str]:
        return [m["id"] for m in httpx.get(children, timeout=10).json()]

    assert found() == []
    runtime.indexer.run_once()  # idle: makes the old documents again
    assert found() == ["admin/child"]
    with runtime.db.read() as tx:
        assert tx.values.get(FORMAT_KEY) == "1"  # not all seen yet: one more idle pass
    runtime.indexer.run_once()
    with runtime.db.read() as tx:
        assert tx.values.get(FORMAT_KEY) == DOC_FORMAT
