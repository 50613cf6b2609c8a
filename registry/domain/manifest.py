"""Manifests: what files a commit holds, with the hashes that let anyone verify them.

One JSON form (`modelyard.manifest/1`) is served by nodes, written to S3 mirrors, and read by
the client library, so a manifest from any source can check bytes from any other. Parsing is
strict: a manifest may come from an untrusted mirror, and its paths become files on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from registry.domain.errors import InvalidError, InvalidPathError
from registry.domain.names import check_repo_path

MANIFEST_FORMAT = "modelyard.manifest/1"
REF_FORMAT = "modelyard.ref/1"
_HEX = {"blake3": re.compile(r"^[0-9a-f]{64}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
MAX_FILES = 100_000


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    blake3: str | None  # hex; None when the source only knows other hashes (the Hub)
    sha256: str | None
    git_sha1: str | None = None  # the Hub's blob id of a regular (non-LFS) file

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"path": self.path, "size": self.size}
        for key in ("blake3", "sha256", "git_sha1"):
            if getattr(self, key):
                item[key] = getattr(self, key)
        return item


@dataclass(frozen=True)
class Manifest:
    repo: str  # namespace/name
    repo_type: str  # model | dataset
    commit: str  # the source's id of the commit
    files: tuple[ManifestFile, ...]
    parent: str | None = None
    title: str = ""
    created_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "repo": self.repo,
            "type": self.repo_type,
            "commit": self.commit,
            "parent": self.parent,
            "title": self.title,
            "created_ms": self.created_ms,
            "files": [f.to_json() for f in self.files],
        }


def parse_manifest(data: object) -> Manifest:
    """A manifest from JSON, refusing anything malformed (unsafe paths, bad hashes)."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InvalidError(f"Not a {MANIFEST_FORMAT} document")
    files = data.get("files")
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise InvalidError("A manifest lists its files in `files`")
    parsed = tuple(_file(item) for item in files)
    if len({f.path for f in parsed}) != len(parsed):
        raise InvalidError("A manifest lists a path twice")
    parent = data.get("parent")
    return Manifest(
        repo=_text(data, "repo"),
        repo_type=_text(data, "type"),
        commit=_text(data, "commit"),
        files=parsed,
        parent=parent if isinstance(parent, str) else None,
        title=str(data.get("title") or ""),
        created_ms=int(data.get("created_ms") or 0),
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidError(f"A manifest needs `{key}`")
    return value


def _file(item: object) -> ManifestFile:
    if not isinstance(item, dict):
        raise InvalidError("A manifest file entry is an object")
    path, size = item.get("path"), item.get("size")
    if not isinstance(path, str) or not isinstance(size, int) or size < 0:
        raise InvalidError("A manifest file entry has a `path` and a `size`")
    hashes: dict[str, str | None] = {}
    for key, pattern in (*_HEX.items(), ("git_sha1", _SHA1)):
        value = item.get(key)
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            raise InvalidError(f"Bad {key} for {path!r}")
        hashes[key] = value
    if not (hashes["blake3"] or hashes["sha256"] or hashes["git_sha1"]):
        raise InvalidError(f"No hash to verify {path!r} by")
    try:
        checked = check_repo_path(path)
    except InvalidPathError as exc:  # a bad document (400), not a bad request path (422)
        raise InvalidError(exc.message, detail=exc.detail) from None
    return ManifestFile(checked, size, **hashes)


def ref_json(ref: str, commit: str, updated_ms: int) -> dict[str, Any]:
    return {"format": REF_FORMAT, "ref": ref, "commit": commit, "updated_ms": updated_ms}


def parse_ref(data: object) -> str:
    """The commit id a ref document points at."""
    if not isinstance(data, dict) or data.get("format") != REF_FORMAT:
        raise InvalidError(f"Not a {REF_FORMAT} document")
    commit = data.get("commit")
    if not isinstance(commit, str) or not commit or "/" in commit:
        raise InvalidError("A ref document names its `commit`")
    return commit
