"""Manifests and the S3 layout: strict parsing (a manifest may come from a hostile mirror)."""

from __future__ import annotations

from typing import Any

import pytest

from mirror.layout import BucketPath
from registry.domain.errors import InvalidError
from registry.domain.manifest import Manifest, ManifestFile, parse_manifest, parse_ref, ref_json

B3 = "a" * 64
COMMIT = "c" * 40


def document(**changes: Any) -> dict[str, Any]:
    manifest = Manifest("alice/m", "model", COMMIT, (ManifestFile("w.bin", 3, B3, B3),))
    return {**manifest.to_json(), **changes}


def test_manifest_round_trips_through_json() -> None:
    parsed = parse_manifest(document())
    assert parsed.files == (ManifestFile("w.bin", 3, B3, B3),)
    assert parsed.commit == COMMIT and parsed.repo == "alice/m"


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "../escape", "size": 1, "blake3": B3}],
        [{"path": "/etc/passwd", "size": 1, "blake3": B3}],
        [{"path": "a\\\\b", "size": 1, "blake3": B3}],
        [{"path": "w.bin", "size": -1, "blake3": B3}],
        [{"path": "w.bin", "size": 1, "blake3": "zz"}],
        [{"path": "w.bin", "size": 1}],  # nothing to verify it by
        [{"path": "w.bin", "size": 1, "blake3": B3}, {"path": "w.bin", "size": 1, "blake3": B3}],
        "not a list",
    ],
)
def test_parse_manifest_refuses_unsafe_or_unverifiable_files(files: object) -> None:
    with pytest.raises(InvalidError):
        parse_manifest(document(files=files))


def test_parse_manifest_refuses_other_documents() -> None:
    cases: list[object] = [[], {"format": "other"}, document(commit=""), document(repo=None)]
    for data in cases:
        with pytest.raises(InvalidError):
            parse_manifest(data)


def test_ref_documents_name_a_commit() -> None:
    assert parse_ref(ref_json("refs/heads/main", COMMIT, 1)) == COMMIT
    for bad in ({"format": "modelyard.ref/1"}, {"format": "x", "commit": COMMIT}):
        with pytest.raises(InvalidError):
            parse_ref(bad)


def test_bucket_paths_follow_the_documented_layout() -> None:
    path = BucketPath.parse("s3://bucket/some/prefix/")
    assert (path.bucket, path.prefix) == ("bucket", "some/prefix/")
    assert path.blob_key(B3) == f"some/prefix/blobs/blake3/aa/{B3}"
    assert path.manifest_key("model", "alice/m", COMMIT) == (
        f"some/prefix/repos/model/alice/m/commits/{COMMIT}.json"
    )
    assert path.ref_key("model", "alice/m", "refs/heads/dev/x") == (
        "some/prefix/repos/model/alice/m/refs/heads/dev/x.json"
    )
    assert path.ref_key("model", "gpt2", "refs/heads/main") == (
        "some/prefix/repos/model/~/gpt2/refs/heads/main.json"  # no namespace: still two levels
    )
    assert path.refs_prefix("dataset", "squad") == "some/prefix/repos/dataset/~/squad/refs/"
    assert BucketPath.parse("s3://bucket").prefix == ""
    for bad in ("http://x", "s3://", "s3:///p"):
        with pytest.raises(InvalidError):
            BucketPath.parse(bad)
    with pytest.raises(InvalidError):
        path.ref_key("model", "alice/m", "refs/heads/../../x")
    with pytest.raises(InvalidError):
        path.manifest_key("model", "alice/m", "../x")
