"""Values exchanged between the replication planner (sync/) and the service that applies."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.domain.changes import ChangeEntry, CommitAdd, DiscussionChange, XetFileAdd


@dataclass(frozen=True)
class FeedPosition:
    """Where a page of a peer's feed ends: its last serial, the chain of the entry there, and
    the peer's head."""

    last_serial: int
    last_chain: str | None
    head: int


@dataclass
class RepoState:
    incarnation: str
    home: str
    refs: dict[str, int] = field(default_factory=dict)  # ref name -> version


@dataclass
class LocalView:
    """What the planner needs to know of local state for the entries of one batch."""

    node_id: str
    applied: dict[tuple[str, int], str | None]  # (origin, origin serial) -> its chain here
    repos: dict[str, RepoState]
    commits: set[str]
    tombstones: set[tuple[str, str]]
    # (repo key at its home, home) -> the key it is held under here (a collision)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateRepo:
    repo: str
    incarnation: str
    home: str
    private: bool
    created_ms: int


@dataclass(frozen=True)
class DeleteRepo:
    repo: str
    incarnation: str


@dataclass(frozen=True)
class MoveRepo:
    """The repo held here as `repo` is renamed to `to` (the same id when `to` is taken here);
    entries of `home` naming `key`, its new key there, apply to it (through an alias when
    `to` is not `key`)."""

    repo: str
    to: str
    key: str
    home: str


@dataclass(frozen=True)
class SetRepoSettings:
    """The home changed a repo's settings: hide it (private) or gate its files at once."""

    repo: str
    private: bool
    gated: str | None


@dataclass(frozen=True)
class AddCommit:
    repo: str
    commit: CommitAdd


@dataclass(frozen=True)
class AddXetFile:
    """Keep a file's Xet recipe, so its xorbs are fetched (not the whole file)."""

    repo: str
    file: XetFileAdd


@dataclass(frozen=True)
class KeepDiscussion:
    """Keep a discussion as its home last described it, and one event of it."""

    repo: str
    change: DiscussionChange


@dataclass(frozen=True)
class SetRef:
    repo: str
    ref: str
    commit: str
    version: int


@dataclass(frozen=True)
class DeleteRef:
    repo: str
    ref: str
    version: int


@dataclass(frozen=True)
class SquashCommits:
    """The home squashed a branch: these commits of the repo lose their trees."""

    repo: str
    commits: tuple[str, ...]


@dataclass(frozen=True)
class PurgeFiles:
    """The home permanently deleted the LFS files with these SHA-256 from every commit."""

    repo: str
    sha256s: tuple[str, ...]


@dataclass(frozen=True)
class Collide:
    """A repo with the same id, homed on another node, exists here already (created here, or
    replicated from elsewhere first): it is left as it is, and the collision is recorded;
    the peer's repo is held under `local` (None: that id is taken too, it is left out)."""

    repo: str
    home: str  # the other repo's home
    incarnation: str
    local: str | None


@dataclass(frozen=True)
class AliasRepo:
    """Entries about `repo` said by `home` apply to the repo held here as `local`."""

    repo: str
    home: str
    local: str


@dataclass(frozen=True)
class Abandon:
    """The origin wrote on from before `after` + 1 (it was restored): the entries of its held
    here past `after` belong to a history it no longer has. Planning stops here; the rest of
    the batch is planned again once they are set aside."""

    origin: str
    after: int


@dataclass(frozen=True)
class Record:
    """Append the entry to this node's own log (keeping its origin), so it is re-served;
    `mirrored`: the local repo its mirrors push it for (None: none, it concerns no repo held
    here for its origin)."""

    entry: ChangeEntry
    mirrored: str | None = None


Action = (
    CreateRepo
    | DeleteRepo
    | MoveRepo
    | SetRepoSettings
    | AddCommit
    | AddXetFile
    | KeepDiscussion
    | SetRef
    | DeleteRef
    | SquashCommits
    | PurgeFiles
    | Collide
    | AliasRepo
    | Abandon
    | Record
)
