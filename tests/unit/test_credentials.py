"""The credentials file of client commands: the longest URL prefix at a path boundary wins."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from registry.cli.credentials import Credentials, load_credentials


def test_credentials_token_for_takes_longest_prefix_at_a_boundary() -> None:
    found = Credentials(
        Path("c.toml"),
        {"http://node:8000": "short", "http://node:8000/team": "long", "http://node:80": "other"},
    )
    assert found.token_for("http://node:8000") == "short"
    assert found.token_for("http://node:8000/") == "short"
    assert found.token_for("http://node:8000/team/x") == "long"
    assert found.token_for("http://node:8000/teams") == "short"
    assert found.token_for("http://node:8001") is None


def test_load_credentials_reads_tables_and_refuses_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text('["http://a:1/"]\ntoken = "ta"\n\n["https://b"]\ntoken = "tb"\n')
    path.chmod(0o600)
    assert load_credentials(path).tokens == {"http://a:1": "ta", "https://b": "tb"}
    path.write_text('["http://a:1"]\ntoken = 3\n')
    with pytest.raises(click.UsageError, match="needs a token"):
        load_credentials(path)
    path.write_text("not toml [")
    with pytest.raises(click.UsageError, match="cannot be read"):
        load_credentials(path)
    with pytest.raises(click.UsageError, match="does not exist"):
        load_credentials(tmp_path / "missing.toml")
