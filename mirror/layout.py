"""The self-describing layout of a mirror bucket (S3 or any S3-compatible store).

    {prefix}modelyard.json                                     what this layout is (below)
    {prefix}blobs/blake3/{hex[:2]}/{hex}                       file bytes (or a xorb's), by BLAKE3
    {prefix}xet/files/{hex}.json                               a Xet file's recipe (mirror.recipes)
    {prefix}xet/xorbs/{hex}.json                               a xorb's chunk index (mirror.recipes)
    {prefix}repos/{type}/{namespace}/{name}/commits/{id}.json  a manifest per commit:
        {"format": "modelyard.manifest/1", "repo", "type", "commit", "parent", "title",
         "created_ms", "files": [{"path", "size", "blake3", "sha256"}]}
    {prefix}repos/{type}/{namespace}/{name}/refs/heads/{branch}.json   and refs/tags/{tag}.json:
        {"format": "modelyard.ref/1", "ref": "refs/heads/main", "commit", "updated_ms"}
    A repo id without a namespace (`gpt2`) has `~` for its namespace: repos/model/~/gpt2/...

A reader resolves `repo@branch` through the ref document, reads the commit's manifest, and
fetches each file's blob, verifying it by BLAKE3; a file uploaded to the node through Xet has
no blob of its own but a recipe, and is rebuilt from the chunks of its xorbs (each a blob). No
node needs to be alive, and a bucket that was tampered with yields errors, never wrong files.
Blobs, recipes, chunk indexes and manifests are immutable; only ref documents are overwritten.
Writers put a xorb before its chunk index, those before the recipe naming them, blobs and
recipes before the manifest, and the manifest before any ref names it, so a reader never
sees a ref to something missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.domain.errors import InvalidError
from registry.domain.names import COMMIT_SHA, NO_NAMESPACE, parse_s3_url

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

    def xet_file_key(self, blake3_hex: str) -> str:
        """The recipe of the file whose bytes hash to `blake3_hex`."""
        return f"{self.prefix}xet/files/{blake3_hex}.json"

    def xet_xorb_key(self, blake3_hex: str) -> str:
        """The chunk index of the xorb stored as blob `blake3_hex`."""
        return f"{self.prefix}xet/xorbs/{blake3_hex}.json"

    def _repo(self, repo_type: str, repo: str) -> str:
        if "/" not in repo:  # an id without a namespace (`gpt2`) keeps the two-level shape
            repo = f"{NO_NAMESPACE}/{repo}"
        return f"{self.prefix}repos/{repo_type}/{repo}"

    def manifest_key(self, repo_type: str, repo: str, commit: str) -> str:
        if not COMMIT_SHA.match(commit):
            raise InvalidError(f"Not a commit id: {commit!r}")
        return f"{self._repo(repo_type, repo)}/commits/{commit}.json"

    def refs_prefix(self, repo_type: str, repo: str) -> str:
        """Where the keys of a repo's refs start (`.../refs/`)."""
        return f"{self._repo(repo_type, repo)}/refs/"

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
        "xet": {
            "files": "xet/files/{blake3}.json",
            "xorbs": "xet/xorbs/{blake3}.json",
        },
    }
