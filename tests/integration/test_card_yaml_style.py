"""Editing a card's metadata on the node rewrites only the keys that change: comments, key
order, quoting and flow lists of the other lines stay as written."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import RunningNode

META = "/v1/repos/model/admin/styled/metadata"
FRONT = """# The license of the weights
license: "apache-2.0"   # kept quoted
tags: [lora, 'sdxl', "style"]
base_model: 'stabilityai/stable-diffusion-xl-base-1.0'

# who made it
widget:
  - text: "a cat, oil"
"""
BODY = "# Styled\n\nA card with style.\n"


def card_at(node: RunningNode, commit: str) -> str:
    path = hf_hub_download("admin/styled", "README.md", endpoint=node.url, revision=commit)
    return Path(path).read_text(encoding="utf-8")


def test_a_metadata_edit_keeps_the_yaml_style_of_other_keys(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/styled")
    card = f"---\n{FRONT}---\n{BODY}"
    first = api.upload_file(
        path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id="admin/styled"
    ).oid
    with node.client(node.admin_token) as http:
        answer = http.put(META, json={"license": "mit", "parent_commit": first})
        assert answer.status_code == 200, answer.text
        commit = answer.json()["commit"]
        assert commit != first and answer.json()["metadata"]["license"] == "mit"
        expected = card.replace('license: "apache-2.0"   # kept quoted', "license: mit")
        assert card_at(node, commit) == expected
        # A new key goes at the end; every other line is left alone.
        added = http.put(META, json={"trigger_words": ["oil style"]}).json()["commit"]
        grown = card_at(node, added)
        assert grown == expected.replace(
            f"---\n{BODY}", f"trigger_words:\n- oil style\n---\n{BODY}"
        )
        # Removing a key drops its lines only (comments around it stay).
        dropped = http.put(META, json={"trigger_words": None}).json()["commit"]
        assert card_at(node, dropped) == expected
        # A no-op edit (same values) makes no commit and leaves the text as it is.
        same = http.put(META, json={"license": "mit", "tags": ["lora", "sdxl", "style"]}).json()[
            "commit"
        ]
        assert same == dropped and card_at(node, same) == expected
    assert api.model_info("admin/styled").card_data["tags"] == ["lora", "sdxl", "style"]  # type: ignore[index]
