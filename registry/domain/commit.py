"""Commits and trees: immutable, with ids derived from their canonical content.

Theory of operation: a commit id is the first 20 bytes of BLAKE3 over a canonical JSON of
(repo key + incarnation, parent, author, title, message, time, tree). The same commit therefore
has the same 40-hex id on every node, so replication is idempotent, and two different trees can
never share an id (the Hub client caches snapshots per commit id forever).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import blake3

from registry.domain.digest import Digest, git_blob_sha1

LFS_POINTER_VERSION = "https://git-lfs.github.com/spec/v1"


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blake3: Digest
    sha256: str
    size: int
    lfs: bool
    git_sha1: str | None = None  # git blob sha1 of the content, for regular files

    @property
    def pointer(self) -> bytes:
        text = f"version {LFS_POINTER_VERSION}\noid sha256:{self.sha256}\nsize {self.size}\n"
        return text.encode()

    @property
    def oid(self) -> str:
        """The git object id of this entry: content sha1, or the pointer's for LFS files."""
        if self.lfs or self.git_sha1 is None:
            return git_blob_sha1(self.pointer)
        return self.git_sha1

    @property
    def etag(self) -> str:
        """What the Hub client keys its cache on: sha256 for LFS, git sha1 for regular."""
        return self.sha256 if self.lfs or self.git_sha1 is None else self.git_sha1


def commit_id(
    *,
    repo_key: str,
    incarnation: str,
    parent: str | None,
    author: str,
    title: str,
    message: str,
    created_ms: int,
    tree: list[TreeEntry],
) -> str:
    canonical = {
        "repo": repo_key,
        "incarnation": incarnation,
        "parent": parent,
        "author": author,
        "title": title,
        "message": message,
        "time": created_ms,
        "tree": sorted([e.path, e.blake3.hex, e.size, e.lfs] for e in tree),
    }
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return str(blake3.blake3(data).hexdigest(length=20))


def tree_oid(paths: list[str]) -> str:
    """A stable stand-in for a git tree oid of a directory (the client never checks it)."""
    return git_blob_sha1("\n".join(sorted(paths)).encode())


def parent_dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
