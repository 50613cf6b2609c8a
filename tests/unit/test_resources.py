"""How images' resource names and hashes are matched against files."""

from __future__ import annotations

import pytest

from registry.domain.resources import file_names, name_key, written_hashes


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ponyDiffusionV6XL_v6", "ponydiffusionv6xl_v6"),
        ("ponyDiffusionV6XL_v6.safetensors", "ponydiffusionv6xl_v6"),
        ("SDXL\\styleLora.SafeTensors", "stylelora"),
        ("loras/sub/x.ckpt", "x"),
        ("sd_xl_base_1.0", "sd_xl_base_1.0"),
        (".safetensors", ".safetensors"),  # nothing left to name: kept whole
        ("", ""),
    ],
)
def test_name_key_is_the_lower_case_base_name_without_a_model_extension(name, key):
    assert name_key(name) == key


def test_file_names_are_the_key_and_the_key_with_each_model_extension():
    names = file_names("stylelora")
    assert names[0] == "stylelora" and "stylelora.safetensors" in names
    assert all(name_key(n) == "stylelora" for n in names)


def test_written_hashes_are_every_form_tools_write_in_lower_case():
    sha, tail = "AB" * 32, "cd" * 32
    assert written_hashes(sha, tail, "0123abcd") == {
        sha.lower(),
        sha.lower()[:10],
        sha.lower()[:12],
        tail,
        tail[:12],
        "0123abcd",
    }
    assert written_hashes(sha, None, None) == {sha.lower(), sha.lower()[:10], sha.lower()[:12]}
