"""Model metadata: set through the native endpoint (a commit to the card), read from the card
and the files (kohya training metadata), flagged by scans in search results."""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import RunningNode

META = "/v1/repos/model/admin/style-lora/metadata"
BODY = "# Style LoRA\n\nPainterly strokes for portraits.\n"


def kohya_lora() -> bytes:
    metadata = {
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_network_module": "networks.lora",
        "ss_network_dim": "32",
        "ss_network_alpha": "16",
        "ss_tag_frequency": json.dumps({"10_painter": {"impasto": 40, "portrait": 25, "oil": 5}}),
        "ss_learning_rate": "0.0001",
    }
    header = json.dumps(
        {"__metadata__": metadata, "w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 8


def put(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return http.put(META, json=body)


def test_metadata_set_by_the_native_endpoint_is_a_commit_to_the_card(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/style-lora")
    api.upload_file(
        path_or_fileobj=BODY.encode(), path_in_repo="README.md", repo_id="admin/style-lora"
    )
    with node.client(node.admin_token) as http:
        answer = put(
            http,
            {
                "kind": "LoRA",
                "base_model": "SDXL 1.0",
                "tags": ["painterly"],
                "trigger_words": ["impasto style"],
                "license": "openrail",
                "lineage": [{"repo": "admin/base@main", "method": "finetune"}],
            },
        )
        assert answer.status_code == 200, answer.text
        meta = answer.json()["metadata"]
        assert meta["kind"] == "lora" and meta["base_model"] == "SDXL 1.0"
        assert meta["trigger_words"] == ["impasto style"]
        assert meta["description"] == "Painterly strokes for portraits."
        assert meta["lineage"][0]["repo"] == "admin/base" and meta["lineage"][0]["ratio"] is None
        commit = answer.json()["commit"]
        # The card is the one place it lives: README.md now carries it, the body kept.
        card = hf_hub_download("admin/style-lora", "README.md", endpoint=node.url, revision=commit)
        text = Path(card).read_text(encoding="utf-8")
        assert text.startswith("---\n") and text.endswith(BODY) and "impasto style" in text
        info = api.model_info("admin/style-lora")
        assert info.sha == commit and info.card_data is not None
        assert info.card_data["kind"] == "LoRA"
        assert info.modelyard["trigger_words"] == ["impasto style"]  # type: ignore[attr-defined]
        # null removes a key, other keys stay.
        removed = put(http, {"license": None, "parent_commit": commit}).json()["metadata"]
        assert removed["license"] is None and removed["kind"] == "lora"
        assert [c.title for c in api.list_repo_commits("admin/style-lora")][:2] == [
            "Update model metadata",
            "Update model metadata",
        ]


def test_metadata_updates_refuse_bad_input_and_change_nothing(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/style-lora")
    head = api.model_info("admin/style-lora").sha
    assert head is not None
    cases: list[tuple[str | None, dict[str, Any] | str, int, str]] = [
        (node.admin_token, {"kind": "spaceship"}, 400, "BadRequest"),
        (node.admin_token, {"lineage": [{"method": "merge"}]}, 400, "BadRequest"),
        (node.admin_token, {"colour": "red"}, 422, "BadRequest"),
        (node.admin_token, {"tags": "not-a-list"}, 422, "BadRequest"),
        (node.admin_token, "{not json", 422, "BadRequest"),
        (node.admin_token, {"kind": "vae", "parent_commit": "0" * 40}, 412, "ParentMismatch"),
        (None, {"kind": "vae"}, 401, "Unauthorized"),
    ]
    for token, body, status, code in cases:
        with node.client(token) as http:
            if isinstance(body, str):
                answer = http.put(META, content=body, headers={"content-type": "application/json"})
            else:
                answer = put(http, body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["X-Error-Code"] == code, (body, answer.headers["X-Error-Code"])
    with node.client(node.admin_token) as http:
        missing = http.put("/v1/repos/model/admin/nothing-here/metadata", json={"kind": "vae"})
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"
    assert api.model_info("admin/style-lora").sha == head  # nothing was committed


def test_lora_training_metadata_is_read_from_the_file_and_searchable(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", index={"interval": 0.05})
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/painter")
    api.upload_file(
        path_or_fileobj=kohya_lora(), path_in_repo="painter.safetensors", repo_id="admin/painter"
    )
    with node.client() as http:
        meta = http.get("/v1/repos/model/admin/painter/metadata").json()
        assert meta["training"]["ss_network_dim"] == "32"
        assert meta["training"]["ss_base_model_version"] == "sdxl_base_v1-0"
        assert "ss_learning_rate" not in meta["training"]
        assert meta["suggested_tags"] == ["impasto", "portrait", "oil"]
        hits = http.get("/v1/search", params={"q": "impasto"}).json()["results"]
        assert [h["id"] for h in hits] == ["admin/painter"]
        assert hits[0]["base_model"] == "sdxl_base_v1-0"  # no card: the trainer's word


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_search_results_flag_unsafe_files_and_still_list_them(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", scan={"interval": 0.05}, index={"interval": 0.05})
    api = HfApi(endpoint=node.url, token=node.admin_token)
    for name, data in (("evil", pickle.dumps(Exploit())), ("fine", pickle.dumps({"w": 1}))):
        api.create_repo(f"admin/{name}-ckpt")
        api.upload_file(path_or_fileobj=data, path_in_repo="m.ckpt", repo_id=f"admin/{name}-ckpt")
    deadline = time.monotonic() + 30
    with node.client() as http:
        while True:
            hits = http.get("/v1/search", params={"q": "ckpt"}).json()["results"]
            scans = {h["id"]: h["scan"] for h in hits}
            if "pending" not in scans.values():
                break
            assert time.monotonic() < deadline, scans
            time.sleep(0.05)
        assert scans == {"admin/evil-ckpt": "unsafe", "admin/fine-ckpt": "clean"}
        listed = http.get("/api/models", params={"search": "ckpt"}).json()
        assert {m["id"]: m["scan"] for m in listed} == scans


def test_a_metadata_put_that_changes_nothing_makes_no_commit(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/style-lora")
    with node.client(node.admin_token) as http:
        first = put(http, {"kind": "lora", "tags": ["ink"]})
        assert first.status_code == 200, first.text
        head = first.json()["commit"]
        again = put(http, {"kind": "lora", "tags": ["ink"]})
        assert again.status_code == 200 and again.json()["commit"] == head
        assert again.json()["metadata"]["tags"] == ["ink"]
        unknown_removal = put(http, {"license": None})  # removing what is not there
        assert unknown_removal.json()["commit"] == head
    assert api.model_info("admin/style-lora").sha == head
    assert [c.title for c in api.list_repo_commits("admin/style-lora")][0] == (
        "Update model metadata"
    )
    assert len(api.list_repo_commits("admin/style-lora")) == 2  # initial + one update
    with node.client(make_reader(node)) as http:  # no right to write: refused, not a no-op
        assert put(http, {"kind": "lora", "tags": ["ink"]}).status_code == 403


def make_reader(node: RunningNode) -> str:
    return node.runtime.auth.create_token("reader", write=False)


def test_search_finds_words_of_the_card_title_and_text(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/clay")
    card = "# Czech stop-motion LoRA\n\nPuppets in the style of 1970s Prague animation studios.\n"
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id="admin/clay")
    api.create_repo("admin/unrelated")
    for query in ("stop-motion", "czech", "prague animation", "puppets"):
        found = [m.id for m in api.list_models(search=query)]
        assert found == ["admin/clay"], (query, found)
    node.runtime.indexer.run_once()  # the same once indexed
    deadline = time.monotonic() + 10
    while node.runtime.indexer.run_once() and time.monotonic() < deadline:
        pass
    assert [m.id for m in api.list_models(search="stop-motion")] == ["admin/clay"]
