"""What a push sends, and the one protocol every mirror kind implements to receive it.

A push is a commit (its files, each with its size and hashes and a local file holding the
bytes, made when a target first asks for it) followed by ref moves naming it. A file the node
holds as Xet xorbs also carries its recipe: a bucket stores the xorbs, other targets ignore it
and read the whole file. Targets make each step idempotent: a blob the target has is skipped,
a commit already there is recognised, so a push interrupted at any point is simply done again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import blake3

from registry.domain.digest import Digest
from registry.domain.errors import BlobUnavailableError
from registry.domain.manifest import Manifest, ManifestFile
from registry.domain.names import COMMIT_SHA
from registry.storage.xet import Recipe

logger = logging.getLogger(__name__)
COMMIT_MARKER = "modelyard-commit:"  # in the description of commits made on Hub-like targets
_READ = 8 * 1024 * 1024


def intact(local: Path, blake3_hex: str, size: int) -> bool:
    """Does the local file still hold exactly these bytes? Read, not mapped: the file may be
    the store's own, and a map of a file that shrinks under it kills the process (SIGBUS)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    read = 0
    with local.open("rb") as f:
        while block := f.read(_READ):
            hasher.update(block)
            read += len(block)
    return bool(hasher.hexdigest() == blake3_hex and read == size)


@dataclass(frozen=True)
class XetParts:
    """How the node holds a file uploaded through Xet: its recipe (terms, and every xorb with
    its chunks), and a local copy of one of its xorbs (a blob of the node's store, by BLAKE3;
    None when it is not stored)."""

    recipe: Recipe
    local_xorb: Callable[[Digest], AbstractContextManager[Path | None]]


@dataclass(frozen=True)
class PushFile:
    path: str
    size: int
    blake3: str
    sha256: str
    lfs: bool  # stored through Git LFS at the source (large or matching .gitattributes)
    # A local file with exactly these bytes, or how to make one: the node's pusher copies a
    # blob out of its store only when a target reads it (a target may have it already).
    local: Path | Callable[[], Path]
    xet: XetParts | None = None  # the node holds the file as Xet xorbs

    @property
    def source(self) -> Path:
        """The local file with these bytes (made now, on first use)."""
        return self.local if isinstance(self.local, Path) else self.local()

    def require_intact(self) -> None:
        """Check, before sending, that the source still hashes to the file's BLAKE3: bytes that
        rotted on this node (before a scrub found them) never reach a mirror; the push fails
        and is retried from the outbox once the blob is repaired."""
        if not intact(self.source, self.blake3, self.size):
            raise BlobUnavailableError(
                f"{self.path}: the stored bytes no longer hash to blake3:{self.blake3}; "
                "not pushed until the blob is repaired (modelyard verify)"
            )


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


@dataclass(frozen=True)
class RemoteHead:
    """Where a ref points on a target: its commit there, and the commit of ours it carries
    (None when no modelyard push made it, such as the Hub's initial commit)."""

    remote: str
    ours: str | None


def carried(message: str) -> str | None:
    """Our commit id named in a commit message a Hub-like push wrote, if any."""
    for line in message.splitlines():
        if line.startswith(COMMIT_MARKER):
            found = line.removeprefix(COMMIT_MARKER).strip()
            return found if COMMIT_SHA.match(found) else None
    return None


class RemoteCommits(Protocol):
    """Where a Hub-like target remembers which of its commits carries one of ours."""

    def remote_commit(self, mirror: str, commit_id: str) -> str | None: ...

    def local_commit(self, mirror: str, remote_id: str) -> str | None: ...

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None: ...


class RemoteBook:
    """A Hub-like target's memory of which remote commit carries each of ours (optional: a
    one-off push keeps none)."""

    def __init__(self, mirror: str, remotes: RemoteCommits | None) -> None:
        self._mirror = mirror
        self._remotes = remotes

    def record(self, ours: str, theirs: str) -> None:
        if self._remotes is not None:
            self._remotes.record_remote(self._mirror, ours, theirs)

    def ours(self, remote: str) -> str | None:
        """One of ours the remote commit carries, as recorded when it was pushed."""
        return self._remotes.local_commit(self._mirror, remote) if self._remotes else None

    def for_tag(self, ours: str, tag: str) -> str | None:
        """The remote commit to put `tag` on; None (logged) if ours was never pushed there."""
        remote = self._remotes.remote_commit(self._mirror, ours) if self._remotes else None
        if remote is None:
            logger.warning(
                "tag not mirrored mirror=%s tag=%s: commit %s was never a branch head there",
                self._mirror,
                tag,
                ours,
            )
        return remote


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

    def head(self, repo_type: str, repo: str, ref: str) -> RemoteHead | None:
        """Where `ref` points on the target now (None: no such ref or repo there)."""
        ...

    def keep(self, repo_type: str, repo: str, ref: str, head: RemoteHead) -> str:
        """Make a branch `recovered/<name>` point at `head` (`-2`, `-3` ... when the name is
        taken by another commit; nothing when one points there already); return its name."""
        ...
