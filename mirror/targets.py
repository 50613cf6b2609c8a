"""What a push sends, and the one protocol every mirror kind implements to receive it.

A push is a commit (its files, each with its size and hashes and a local file holding the
bytes) followed by ref moves naming it. Targets make each step idempotent: a blob the target
has is skipped, a commit already there is recognised, so a push interrupted at any point is
simply done again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from registry.domain.manifest import Manifest, ManifestFile

COMMIT_MARKER = "modelyard-commit:"  # in the description of commits made on Hub-like targets


@dataclass(frozen=True)
class PushFile:
    path: str
    size: int
    blake3: str
    sha256: str
    lfs: bool  # stored through Git LFS at the source (large or matching .gitattributes)
    source: Path  # a local file with exactly these bytes


@dataclass(frozen=True)
class PushCommit:
    repo_type: str  # model | dataset
    repo: str  # namespace/name
    commit: str  # the source's commit id (40 hex)
    parent: str | None
    title: str
    created_ms: int
    files: tuple[PushFile, ...]

    def manifest(self) -> Manifest:
        files = tuple(ManifestFile(f.path, f.size, f.blake3, f.sha256) for f in self.files)
        return Manifest(
            self.repo, self.repo_type, self.commit, files, self.parent, self.title, self.created_ms
        )


class RemoteCommits(Protocol):
    """Where a Hub-like target remembers which of its commits carries one of ours."""

    def remote_commit(self, mirror: str, commit_id: str) -> str | None: ...

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None: ...


class Target(Protocol):
    @property
    def name(self) -> str: ...

    def push_commit(self, commit: PushCommit) -> None:
        """Make the commit's blobs (and, where the target keeps them, its manifest) present."""
        ...

    def set_ref(self, commit: PushCommit, ref: str) -> None:
        """Point `ref` (refs/heads/... or refs/tags/...) at the pushed commit."""
        ...

    def delete_ref(self, repo_type: str, repo: str, ref: str) -> None: ...
