"""Which requests the rate limits count, how tokens are recognised, and the limit settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry.api.ratelimit import plausible_token, request_class
from registry.settings import LimitSettings, load_settings

R = "/api/models/alice/lora"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/api/repos/create", "writes"),
        ("DELETE", "/api/repos/delete", "writes"),
        ("POST", f"{R}/commit/main", "writes"),
        ("POST", f"{R}/preupload/main", "writes"),
        ("PUT", "/lfs/objects/" + "a" * 64, "writes"),
        ("PUT", "/v1/blobs/" + "b" * 64, "writes"),
        ("PUT", "/v1/repos/model/alice/lora/metadata", "writes"),
        ("PATCH", "/anything", "writes"),
        ("POST", f"{R}/paths-info/main", "reads"),  # a POST that only reads
        ("GET", "/v1/search", "reads"),
        ("GET", "/api/models", "reads"),
        ("GET", "/api/datasets/", "reads"),
        ("GET", f"{R}/tree/main", "reads"),
        ("GET", f"{R}/tree/main/sub/dir", "reads"),
        ("GET", f"{R}/commits/main", "reads"),
        ("GET", "/api/datasets/alice/data/tree/v1", "reads"),
        ("GET", "/v1/sync/changes", "reads"),
        ("GET", "/v1/files/by-hash/abc", "reads"),
        ("GET", "/v1/repos/model/alice/lora/lineage", "reads"),
        ("GET", "/v1/search/status", None),
        ("GET", R, None),
        ("GET", f"{R}/revision/main", None),
        ("GET", f"{R}/refs", None),
        ("GET", "/api/models/alice/tree", None),  # a repo named "tree" is not a listing
        ("GET", "/alice/lora/resolve/main/w.safetensors", None),
        ("HEAD", "/alice/lora/resolve/main/w.safetensors", None),
        ("GET", "/v1/blobs/" + "b" * 64, None),
        ("GET", "/v1/repos/model/alice/lora/manifest/main", None),
        ("GET", "/v1/health", None),
        ("GET", "/metrics", None),
        ("GET", "/status", None),
        ("OPTIONS", "/api/repos/create", None),
    ],
)
def test_request_class_sorts_writes_and_expensive_reads(
    method: str, path: str, kind: str | None
) -> None:
    assert request_class(method, path) == kind


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer myd_abcdefgh", "myd_abcdefgh"),
        (b"bearer   myd_abcdefgh  ", "myd_abcdefgh"),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearer short", None),
        (b"Bearer " + b"x" * 600, None),
        (b"Bearer two words", None),
    ],
)
def test_plausible_token_only_when_it_looks_like_one(header: bytes, token: str | None) -> None:
    scope = {"headers": [(b"host", b"x"), (b"authorization", header)]}
    assert plausible_token(scope) == token


def test_rate_limits_accept_the_limits_notation_and_empty_for_none() -> None:
    limits = LimitSettings(writes_per_token="10 per 2 seconds", reads_per_address="")
    assert limits.writes_per_token == "10 per 2 seconds" and limits.reads_per_address is None
    for bad in ("lots", "0/minute", "10/fortnight"):
        with pytest.raises(ValidationError, match="is not a rate"):
            LimitSettings(writes_per_token=bad)
    with pytest.raises(ValidationError):
        LimitSettings(max_blob_bytes=-1)


def test_rate_limits_and_exempt_users_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_LIMITS__WRITES_PER_ADDRESS", "")
    monkeypatch.setenv("MODELYARD_LIMITS__READS_PER_TOKEN", "5/second")
    monkeypatch.setenv("MODELYARD_LIMITS__EXEMPT_USERS", '["mirror-b", "peer-c"]')
    monkeypatch.setenv("MODELYARD_LIMITS__MAX_BLOB_BYTES", "0")
    limits = load_settings().limits
    assert (limits.writes_per_address, limits.reads_per_token) == (None, "5/second")
    assert limits.exempt_users == ["mirror-b", "peer-c"] and limits.max_blob_bytes == 0
    assert limits.writes_per_token == "1800/minute"  # unset keys keep their defaults
