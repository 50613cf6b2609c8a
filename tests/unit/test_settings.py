"""Settings precedence: flags > MODELYARD_* variables > TOML file > defaults; typos refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.settings import Settings, load_settings

CONFIG = """\
host = "0.0.0.0"
port = 7000
node_id = "from-file"
log_level = "DEBUG"

[limits]
max_json_bytes = 10
max_page_size = 50

[sync]
long_poll = 3.5

[[sync.peers]]
url = "http://p:1"
blobs = "lazy"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    return path


def test_load_settings_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.data_dir) == (
        "127.0.0.1",
        8000,
        Path("./modelyard-data"),
    )
    assert settings.limits.max_json_bytes == 1024 * 1024
    assert settings.sync.peers == [] and settings.admin_token is None
    assert settings.effective_database_url == "sqlite:///modelyard-data/modelyard.db"
    assert settings.blob_dir == Path("./modelyard-data/store")


def test_load_settings_file_beats_defaults(config: Path) -> None:
    settings = load_settings(config)
    assert (settings.host, settings.port, settings.node_id) == ("0.0.0.0", 7000, "from-file")
    assert (settings.limits.max_json_bytes, settings.limits.max_page_size) == (10, 50)
    assert settings.limits.max_commit_bytes == 256 * 1024 * 1024  # unset keys keep defaults
    assert settings.sync.long_poll == 3.5 and settings.sync.batch == 500
    assert [(p.url, p.blobs) for p in settings.sync.peers] == [("http://p:1", "lazy")]


def test_load_settings_env_beats_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "7100")
    monkeypatch.setenv("MODELYARD_LIMITS__MAX_JSON_BYTES", "20")
    settings = load_settings(config)
    assert (settings.port, settings.limits.max_json_bytes) == (7100, 20)
    # Variables replace single keys: the rest of the file's section still applies.
    assert (settings.host, settings.limits.max_page_size) == ("0.0.0.0", 50)


def test_load_settings_env_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_LIMITS__MAX_JSON_BYTES", "123")
    monkeypatch.setenv("MODELYARD_SYNC__PROBE_INTERVAL", "0.5")
    monkeypatch.setenv("MODELYARD_ADMIN_TOKEN", "myd_secret")
    settings = load_settings()
    assert settings.limits.max_json_bytes == 123 and settings.sync.probe_interval == 0.5
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "myd_secret"
    assert "myd_secret" not in repr(settings)


def test_load_settings_flags_beat_env_and_file(
    config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "7100")
    monkeypatch.setenv("MODELYARD_DATA_DIR", str(tmp_path / "env"))
    settings = load_settings(config, port=7200, data_dir=tmp_path / "flag", host=None)
    assert (settings.port, settings.data_dir) == (7200, tmp_path / "flag")
    assert settings.host == "0.0.0.0"  # a flag left out (None) does not hide the file


@pytest.mark.parametrize(
    "text",
    [
        "prot = 1\n",
        "[limits]\nmax_jsn_bytes = 10\n",
        "[sync]\nlong_pol = 5\n",
        "[scan]\nenable = false\n",
        '[[sync.peers]]\nurl = "http://p:1"\ntokn = "x"\n',
        "[nosuch]\nx = 1\n",
    ],
)
def test_load_settings_rejects_unknown_keys_in_the_file(tmp_path: Path, text: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValidationError, match="xtra"):
        load_settings(config)


def test_load_settings_rejects_unknown_nested_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_LIMITS__MAX_JSN_BYTES", "10")
    with pytest.raises(ValidationError):
        load_settings()


def test_load_settings_rejects_unknown_flags() -> None:
    with pytest.raises(ValidationError):
        load_settings(prot=1)


def test_load_settings_rejects_badly_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "eighty")
    with pytest.raises(ValidationError):
        load_settings()


def test_settings_refuse_duplicate_peers() -> None:
    with pytest.raises(ValidationError, match="unique"):
        Settings(sync={"peers": [{"url": "http://a"}, {"url": "http://a/"}]})


def test_settings_blob_store_endpoint_from_env_and_only_with_an_s3_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_BLOB_STORE_ENDPOINT", "http://127.0.0.1:9000")
    with pytest.raises(ValidationError, match="blob_store_endpoint"):
        load_settings()  # an endpoint for blobs kept in the data dir is a mistake
    monkeypatch.setenv("MODELYARD_BLOB_STORE", "s3://models/node")
    settings = load_settings()
    assert (settings.blob_store, settings.blob_store_endpoint) == (
        "s3://models/node",
        "http://127.0.0.1:9000",
    )


def test_settings_gc_grace_from_file_and_env_and_never_negative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().gc.grace == 24 * 3600
    path = tmp_path / "gc.toml"
    path.write_text("[gc]\ngrace = 600\n")
    assert load_settings(path).gc.grace == 600
    monkeypatch.setenv("MODELYARD_GC__GRACE", "0")
    assert load_settings(path).gc.grace == 0
    monkeypatch.setenv("MODELYARD_GC__GRACE", "-1")
    with pytest.raises(ValidationError):
        load_settings(path)


def test_scrub_rate_reads_units_from_variables_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().scrub.rate == 32 * 1024 * 1024
    path = tmp_path / "node.toml"
    path.write_text('[scrub]\nrate = "1GiB"\ninterval = 3600\n')
    assert (load_settings(path).scrub.rate, load_settings(path).scrub.interval) == (2**30, 3600)
    monkeypatch.setenv("MODELYARD_SCRUB__RATE", "64MiB")
    assert load_settings(path).scrub.rate == 64 * 1024 * 1024
    monkeypatch.setenv("MODELYARD_SCRUB__RATE", "fast")
    with pytest.raises(ValidationError, match="scrub.rate"):
        load_settings(path)


def test_scrub_interval_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="scrub.interval"):
        Settings(scrub={"interval": 0})
