"""What the metadata layer answers with: frozen values, never table rows.

`registry.metadata` reads these out of its tables and takes them back in its commands; the
services above it see nothing else of the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.domain.commit import TreeEntry
from registry.domain.digest import Digest
from registry.domain.names import RepoId
from registry.domain.xet.types import ChunkEntry, Term, XetHash


@dataclass(frozen=True)
class RepoRecord:
    id: int  # this node's row id: never leaves the node
    repo: RepoId
    private: bool
    home_node: str  # the node that accepts the repo's writes
    incarnation: str  # a new one for each creation under the same name
    created_ms: int
    updated_ms: int
    ref_version: int  # the version of the newest ref move (orders replicated ref moves)
    pr_count: int
    downloads: int  # counted on this node; not replicated
    gated: str | None = None  # "auto" or "manual": downloads need an accepted access request

    @property
    def key(self) -> str:
        return self.repo.key


@dataclass(frozen=True)
class AccessRequestRecord:
    """A user's request to download a gated repo's files."""

    repo_id: int
    user: str
    status: str  # pending, accepted or rejected
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class CommitRecord:
    id: str
    repo_id: int
    parent: str | None
    author: str
    title: str
    message: str
    created_ms: int


@dataclass(frozen=True)
class RefRecord:
    name: str  # refs/heads/main, refs/tags/v1, refs/pr/1
    commit_id: str
    version: int


@dataclass(frozen=True)
class TreeFile:
    """A file of a commit's tree, with the commit that last changed it."""

    entry: TreeEntry
    last_commit: str

    @property
    def path(self) -> str:
        return self.entry.path


@dataclass(frozen=True)
class BlobRecord:
    digest: Digest
    sha256: str
    size: int
    git_sha1: str | None
    created_ms: int
    wanted_ms: int  # when an upload last stored or relied on these bytes (gc's grace)


@dataclass(frozen=True)
class PeerRecord:
    """A node this one pulls from, and how far it has read the peer's change feed."""

    id: str
    url: str
    blobs: str  # eager | lazy
    node_id: str | None  # learned at first contact, then expected
    epoch: str | None
    cursor: int  # last serial of the peer's feed applied here
    head: int  # the peer's head serial when last seen
    behind_since_ms: int | None  # when unapplied entries were first seen
    # The token as stored (sealed when the node has a credentials key): opaque, opened only by
    # `PeerService.credential`, never shown.
    stored_token: str | None = field(repr=False)
    cursor_chain: str | None = None  # the chain of the peer's entry at `cursor`, if known
    diverged_ms: int | None = None  # when its history was last found to have diverged
    resync_to: int | None = None  # its head then: resyncing until the cursor is back there

    @property
    def token_set(self) -> bool:
        return bool(self.stored_token)


@dataclass(frozen=True)
class XorbRecord:
    """A Xet xorb held here: its bytes are the blob `blake3` of the blob store."""

    hash: XetHash
    blake3: Digest
    size: int
    chunks: tuple[ChunkEntry, ...]


@dataclass(frozen=True)
class XetFileRecord:
    """A file uploaded through Xet: its terms, and its identity as a blob."""

    hash: XetHash
    blake3: Digest
    sha256: str
    size: int
    terms: tuple[Term, ...]

    @property
    def xorbs(self) -> frozenset[XetHash]:
        return frozenset(t.xorb for t in self.terms)
