"""Settings precedence: flags > MODELYARD_* variables > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.settings import Settings, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.data_dir) == (
        "127.0.0.1",
        8000,
        Path("./modelyard-data"),
    )
    assert settings.effective_database_url.startswith("sqlite:///")


def test_flags_beat_env_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'host = "0.0.0.0"\nport = 7000\nnode_id = "from-file"\n'
        '[limits]\nmax_json_bytes = 10\n[[sync.peers]]\nurl = "http://p:1"\n'
    )
    from_file = load_settings(config)
    assert (from_file.host, from_file.port, from_file.node_id) == ("0.0.0.0", 7000, "from-file")
    assert from_file.limits.max_json_bytes == 10
    assert from_file.sync.peers[0].url == "http://p:1"
    monkeypatch.setenv("MODELYARD_PORT", "7100")
    monkeypatch.setenv("MODELYARD_LIMITS__MAX_JSON_BYTES", "20")
    from_env = load_settings(config)
    assert (from_env.port, from_env.limits.max_json_bytes, from_env.host) == (7100, 20, "0.0.0.0")
    from_flag = load_settings(config, port=7200, host=None)
    assert (from_flag.port, from_flag.host) == (7200, "0.0.0.0")


def test_unknown_keys_and_duplicate_peers_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValidationError):
        load_settings(config)
    with pytest.raises(ValidationError):
        Settings(sync={"peers": [{"url": "http://a"}, {"url": "http://a/"}]})
