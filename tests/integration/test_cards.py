"""Model card front matter: returned in model info, and used by listing filters."""

from __future__ import annotations

import json
import struct

from huggingface_hub import HfApi

from registry.service.cards import parse_card
from tests.conftest import RunningNode

CARD = """---
license: openrail
kind: lora
base_model: SDXL 1.0
tags: [anime, style]
trigger_words: [ghibli style]
---
# Ghibli style LoRA
"""


def test_model_info_returns_card_data_and_tags(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/ghibli")
    api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id="admin/ghibli")
    info = api.model_info("admin/ghibli")
    assert info.card_data is not None and info.card_data["trigger_words"] == ["ghibli style"]
    assert {"anime", "style", "kind:lora", "base_model:SDXL 1.0", "license:openrail"} <= set(
        info.tags or []
    )


def test_list_models_filters_by_every_tag(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    for name, card in (
        ("ghibli", CARD),
        ("plain", "# no front matter\n"),
        ("broken", "---\ntags: [unclosed\n---\n"),
    ):
        api.create_repo(f"admin/{name}")
        api.upload_file(
            path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=f"admin/{name}"
        )
    assert [m.id for m in api.list_models(filter="anime")] == ["admin/ghibli"]
    assert [m.id for m in api.list_models(filter=["kind:lora", "style"])] == ["admin/ghibli"]
    assert list(api.list_models(filter=["anime", "photo"])) == []
    assert {m.id for m in api.list_models(author="admin")} == {
        "admin/ghibli",
        "admin/plain",
        "admin/broken",
    }  # a bad card hides nothing


def test_parse_card_tolerates_missing_and_invalid_front_matter() -> None:
    assert parse_card("# title\n").data == {}
    assert parse_card("---\n: : :\n---\n").data == {}
    assert parse_card("---\n- a list\n---\n").data == {}
    assert parse_card(CARD).tags[:2] == ["anime", "style"]


def test_model_info_reports_safetensors_parameters(node: RunningNode) -> None:
    header = json.dumps(
        {
            "w": {"dtype": "BF16", "shape": [16, 4], "data_offsets": [0, 128]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [128, 144]},
        }
    )
    weights = struct.pack("<Q", len(header)) + header.encode() + b"\0" * 144
    forged = struct.pack("<Q", 2**60) + b"{}"
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/weights")
    api.upload_file(
        path_or_fileobj=weights, path_in_repo="unet.safetensors", repo_id="admin/weights"
    )
    api.upload_file(
        path_or_fileobj=forged, path_in_repo="forged.safetensors", repo_id="admin/weights"
    )  # stored as uploaded, skipped by the summary
    info = api.model_info("admin/weights")
    assert info.safetensors is not None
    assert info.safetensors.parameters == {"BF16": 64, "F32": 4}
    assert info.safetensors.total == 68
