"""The self-describing layout of a mirror bucket (S3 or any S3-compatible store).

    {prefix}modelyard.json                                     what this layout is (below)
    {prefix}blobs/blake3/{hex[:2]}/{hex}                       file bytes, named by BLAKE3
    {prefix}repos/{type}/{namespace}/{name}/commits/{id}.json  a manifest per commit:
        {"format": "modelyard.manifest/1", "repo", "type", "commit", "parent", "title",
         "created_ms", "files": [{"path", "size", "blake3", "sha256"}]}
    {prefix}repos/{type}/{namespace}/{name}/refs/heads/{branch}.json   and refs/tags/{tag}.json:
        {"format": "modelyard.ref/1", "ref": "refs/heads/main", "commit", "updated_ms"}

A reader resolves `repo@branch` through the ref document, reads the commit's manifest, and
fetches each file's blob, verifying it by BLAKE3: no node needs to be alive, and a bucket that
was tampered with yields errors, never wrong files. Blobs and manifests are immutable; only
ref documents are overwritten. Writers put blobs before the manifest, and the manifest before
any ref names it, so a reader never sees a ref to something missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.domain.errors import InvalidError
from registry.domain.names import COMMIT_SHA, parse_s3_url

LAYOUT_FORMAT = "modelyard.layout/1"


@dataclass(frozen=True)
class BucketPath:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> BucketPath:
        """`s3://bucket/some/prefix` -> bucket, `some/prefix/`."""
        return cls(*parse_s3_url(url))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def layout_key(self) -> str:
        return f"{self.prefix}modelyard.json"

    def blob_key(self, blake3_hex: str) -> str:
        return f"{self.prefix}blobs/blake3/{blake3_hex[:2]}/{blake3_hex}"

    def _repo(self, repo_type: str, repo: str) -> str:
        return f"{self.prefix}repos/{repo_type}/{repo}"

    def manifest_key(self, repo_type: str, repo: str, commit: str) -> str:
        if not COMMIT_SHA.match(commit):
            raise InvalidError(f"Not a commit id: {commit!r}")
        return f"{self._repo(repo_type, repo)}/commits/{commit}.json"

    def ref_key(self, repo_type: str, repo: str, ref: str) -> str:
        """`refs/heads/main` -> .../refs/heads/main.json."""
        if not ref.startswith(("refs/heads/", "refs/tags/")) or ".." in ref:
            raise InvalidError(f"Not a branch or tag ref: {ref!r}")
        return f"{self._repo(repo_type, repo)}/{ref}.json"


def layout_document() -> dict[str, Any]:
    return {
        "format": LAYOUT_FORMAT,
        "blobs": "blobs/blake3/{hex[:2]}/{hex}",
        "manifests": "repos/{type}/{namespace}/{name}/commits/{commit}.json",
        "refs": "repos/{type}/{namespace}/{name}/refs/{heads|tags}/{name}.json",
    }
