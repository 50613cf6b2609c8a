"""`rewrite_card`: only the front-matter lines of keys whose value changes are rewritten."""

from __future__ import annotations

import pytest

from registry.domain.errors import InvalidError
from registry.service.cards import parse_card, rewrite_card

CARD = """---
# weights license
license: "apache-2.0"  # quoted
tags: [lora, 'sdxl']
widget:
  - text: "a cat"

# about the base
base_model: 'x/y'
---
# Body
"""


def test_a_changed_key_is_rewritten_in_place_and_nothing_else_moves() -> None:
    out = rewrite_card(CARD, {"license": "mit"})
    assert out == CARD.replace('license: "apache-2.0"  # quoted', "license: mit")
    assert parse_card(out).data["tags"] == ["lora", "sdxl"]


def test_a_block_value_is_replaced_whole_and_the_comments_after_it_stay() -> None:
    out = rewrite_card(CARD, {"widget": [{"text": "a dog"}]})
    assert "widget:\n- text: a dog\n\n# about the base\nbase_model: 'x/y'\n" in out
    assert parse_card(out).data["widget"] == [{"text": "a dog"}]


def test_unchanged_values_keep_the_text_byte_for_byte() -> None:
    assert rewrite_card(CARD, {"license": "apache-2.0", "tags": ["lora", "sdxl"]}) == CARD


def test_removing_and_adding_keys() -> None:
    out = rewrite_card(CARD, {"widget": None, "kind": "lora"})
    assert "widget" not in out and "  - text" not in out
    assert out.endswith("base_model: 'x/y'\nkind: lora\n---\n# Body\n")
    assert rewrite_card("---\nlicense: mit\n---\nbody\n", {"license": None}) == "body\n"
    assert rewrite_card("body\n", {"license": "mit"}) == "---\nlicense: mit\n---\nbody\n"


def test_a_flow_mapping_front_matter_is_written_again_in_block_style() -> None:
    out = rewrite_card("---\n{license: mit, tags: [a]}\n---\nbody\n", {"license": "other"})
    assert out == "---\nlicense: other\ntags:\n- a\n---\nbody\n"


@pytest.mark.parametrize("front", ["- a\n- b", "just text", "license: [unclosed"])
def test_front_matter_that_is_no_block_mapping_is_refused(front: str) -> None:
    with pytest.raises(InvalidError):
        rewrite_card(f"---\n{front}\n---\nbody\n", {"license": "mit"})
