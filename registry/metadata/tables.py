"""The SQL tables. Rows hold plain values; domain values are built by the services."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, Table, UniqueConstraint, func, text
from sqlmodel import Field, SQLModel

# Milliseconds, sizes and serials outgrow 32 bits: BIGINT on Postgres; SQLite's INTEGER is
# already 64-bit (and an INTEGER primary key stays the rowid).
BIG = BigInteger().with_variant(Integer(), "sqlite")


class NodeState(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str


class Counter(SQLModel, table=True):
    name: str = Field(primary_key=True)
    value: int = 0


class User(SQLModel, table=True):
    name: str = Field(primary_key=True)
    is_admin: bool = False
    created_ms: int = Field(sa_type=BIG)


class Token(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    hash: str = Field(unique=True, index=True)
    user: str = Field(index=True)
    write: bool = False
    label: str = ""
    created_ms: int = Field(sa_type=BIG)
    expires_ms: int | None = Field(default=None, sa_type=BIG)
    revoked_ms: int | None = Field(default=None, sa_type=BIG)  # kept: a revoked token says so
    last_used_ms: int | None = Field(default=None, sa_type=BIG)  # written in batches, late


class Org(SQLModel, table=True):
    name: str = Field(primary_key=True)  # never a user's name
    created_ms: int = Field(sa_type=BIG)


class OrgMember(SQLModel, table=True):
    org: str = Field(primary_key=True)
    user: str = Field(primary_key=True, index=True)
    role: str  # read, write or admin (registry.domain.access.ROLES)


class Repo(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("type", "namespace", "name"),
        # Listings and search walk these in order and stop after a page.
        Index("ix_repo_type_updated", "type", "updated_ms"),
        Index("ix_repo_type_created", "type", "created_ms"),
        Index("ix_repo_type_downloads", "type", "downloads"),
        # Ids are looked up whatever their case, as on the Hub (`Repos.find`).
        Index("ix_repo_folded", "type", func.lower(text("namespace")), func.lower(text("name"))),
    )
    id: int | None = Field(default=None, primary_key=True)
    type: str
    namespace: str = Field(index=True)
    name: str
    private: bool = False
    home_node: str
    incarnation: str
    created_ms: int = Field(sa_type=BIG)
    updated_ms: int = Field(sa_type=BIG)
    ref_version: int = 0
    pr_count: int = 0
    downloads: int = Field(default=0, sa_type=BIG)  # counted on this node; not replicated
    gated: str | None = None  # "auto" or "manual": downloads need an accepted access request


class AccessRequest(SQLModel, table=True):
    """A user's request to download a gated repo's files: pending, accepted or rejected.
    Kept on the node that took it (not replicated)."""

    __tablename__ = "access_request"
    repo_id: int = Field(primary_key=True)
    user: str = Field(primary_key=True)
    status: str
    created_ms: int = Field(sa_type=BIG)
    updated_ms: int = Field(sa_type=BIG)


class Blob(SQLModel, table=True):
    blake3: str = Field(primary_key=True)
    sha256: str = Field(index=True)
    size: int = Field(sa_type=BIG)
    git_sha1: str | None = None
    created_ms: int = Field(sa_type=BIG)
    # When an upload last stored or reused these bytes (an LFS batch answering "already
    # stored", say): gc keeps an unreferenced blob until its grace period has passed since.
    wanted_ms: int = Field(default=0, sa_type=BIG)


class Xorb(SQLModel, table=True):
    """A Xet xorb held here: up to 64 MiB of compressed chunks, verified on receipt. Its bytes
    are a blob of the blob store (named by their BLAKE3, with a `blob` row); `chunks` is
    its chunk index (`registry.domain.xet.types.pack_index`)."""

    hash: str = Field(primary_key=True)  # Xet string form
    blake3: str = Field(index=True)
    size: int = Field(sa_type=BIG)  # serialized bytes
    chunk_count: int
    chunks: bytes = Field(sa_type=LargeBinary)
    created_ms: int = Field(sa_type=BIG)


class XetFile(SQLModel, table=True):
    """A file uploaded through Xet: the terms that rebuild it, and its identity as a blob
    (BLAKE3, SHA-256, size), computed by rebuilding it before anything may name it."""

    __tablename__ = "xet_file"
    hash: str = Field(primary_key=True)  # Xet string form
    blake3: str = Field(index=True)
    sha256: str
    size: int = Field(sa_type=BIG)
    terms: bytes = Field(sa_type=LargeBinary)  # `registry.domain.xet.types.pack_terms`
    created_ms: int = Field(sa_type=BIG)


class XetFileXorb(SQLModel, table=True):
    """Which xorbs a Xet file's terms name (what gc keeps, what a replica must hold), with
    the blob each xorb is (what a replica fetches)."""

    __tablename__ = "xet_file_xorb"
    file: str = Field(primary_key=True)
    xorb: str = Field(primary_key=True, index=True)
    blake3: str = Field(index=True)
    size: int = Field(sa_type=BIG)


class XetChunk(SQLModel, table=True):
    """The global-dedup index: a chunk eligible for dedup queries, and a xorb holding it."""

    __tablename__ = "xet_chunk"
    hash: str = Field(primary_key=True)  # Xet string form
    xorb: str


class BlobQuarantine(SQLModel, table=True):
    """A blob whose stored bytes failed a scrub: never served while the row exists. Removed
    only once the bytes under the blob's key were read back and hash to its name."""

    __tablename__ = "blob_quarantine"
    blake3: str = Field(primary_key=True)
    reason: str  # corrupt | missing
    detail: str  # what was found, e.g. "hashes to blake3:..." or "12 bytes, expected 40"
    found_ms: int = Field(sa_type=BIG)
    attempts: int = 0  # repairs tried
    last_attempt_ms: int | None = Field(default=None, sa_type=BIG)
    last_error: str | None = None


class Commit(SQLModel, table=True):
    id: str = Field(primary_key=True)
    repo_id: int = Field(index=True)
    parent: str | None = None
    author: str
    title: str
    message: str = ""
    created_ms: int = Field(sa_type=BIG)


class TreeRow(SQLModel, table=True):
    __tablename__ = "tree_entry"
    commit_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    blake3: str = Field(index=True)
    sha256: str = Field(index=True)  # lookup by SHA-256 and AutoV2 prefix
    size: int = Field(sa_type=BIG)
    lfs: bool
    git_sha1: str | None = None
    last_commit: str


class PurgedFile(SQLModel, table=True):
    """A tree entry taken out of a commit because its LFS file was permanently deleted: a
    download of it answers that it was deleted, not that it never existed."""

    __tablename__ = "purged_file"
    commit_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    repo_id: int = Field(index=True)
    sha256: str
    size: int = Field(sa_type=BIG)
    purged_ms: int = Field(sa_type=BIG)


class SquashedCommit(SQLModel, table=True):
    """A commit a super-squash left unreachable: its tree is gone, the commit row stays (the
    change log and mirrors name it)."""

    __tablename__ = "squashed_commit"
    commit_id: str = Field(primary_key=True)
    repo_id: int = Field(index=True)
    squashed_ms: int = Field(sa_type=BIG)


class Ref(SQLModel, table=True):
    repo_id: int = Field(primary_key=True)
    name: str = Field(primary_key=True)  # refs/heads/main, refs/tags/v1, refs/pr/1
    commit_id: str
    version: int


class Discussion(SQLModel, table=True):
    """A repo's discussion or PR as it stands now (numbered with the repo's PRs)."""

    repo_id: int = Field(primary_key=True)
    num: int = Field(primary_key=True)
    title: str
    author: str
    status: str
    pull_request: bool
    created_ms: int = Field(sa_type=BIG)
    target: str | None = None
    base: str | None = None
    merge_commit: str | None = None


class DiscussionEvent(SQLModel, table=True):
    __tablename__ = "discussion_event"
    __table_args__ = (Index("ix_discussion_event_num", "repo_id", "num", "seq"),)
    seq: int | None = Field(default=None, primary_key=True)  # the order events came in
    id: str = Field(unique=True)
    repo_id: int
    num: int
    type: str
    author: str
    created_ms: int = Field(sa_type=BIG)
    data: str  # JSON object of strings
    edited_ms: int | None = Field(default=None, sa_type=BIG)


class Change(SQLModel, table=True):
    """The change log peers pull; `serial` is gap-free and written with each change."""

    __table_args__ = (Index("ix_change_origin", "origin", "origin_serial"),)
    serial: int = Field(primary_key=True, sa_type=BIG)
    origin: str
    origin_serial: int = Field(sa_type=BIG)
    kind: str
    repo: str
    private: bool  # entries of private repos go only to peers that may read them
    body: str
    created_ms: int = Field(sa_type=BIG)
    chain: str | None = None  # per-origin hash chain (registry.domain.history); None: unknown
    # When its origin's history was found to have moved on without it (a restored origin):
    # kept, never served again, until it is recovered.
    abandoned_ms: int | None = Field(default=None, sa_type=BIG, index=True)
    recovered_ms: int | None = Field(default=None, sa_type=BIG)  # its commit came back since


class Peer(SQLModel, table=True):
    """A node this one pulls from. `token` is kept to be used (sealed when the node has a
    credentials key: `registry.service.credentials`), never shown back."""

    id: str = Field(primary_key=True)
    url: str = Field(unique=True)
    token: str | None = Field(default=None, repr=False)
    blobs: str = "eager"  # eager | lazy
    node_id: str | None = None  # learned at first contact, then expected
    epoch: str | None = None
    cursor: int = Field(default=0, sa_type=BIG)  # last serial of the peer's feed applied here
    cursor_chain: str | None = None  # the chain of the peer's entry at `cursor`, if known
    # When this node last found the peer's history diverged from what it had read, and the
    # peer's head then: "resyncing" until the cursor is back there.
    diverged_ms: int | None = Field(default=None, sa_type=BIG)
    resync_to: int | None = Field(default=None, sa_type=BIG)
    head: int = Field(default=0, sa_type=BIG)  # the peer's head serial when last seen
    behind_since_ms: int | None = Field(
        default=None, sa_type=BIG
    )  # when we first saw unapplied entries
    created_ms: int = Field(sa_type=BIG)


class Tombstone(SQLModel, table=True):
    """A deleted incarnation of a repo: late entries for it are ignored."""

    repo: str = Field(primary_key=True)
    incarnation: str = Field(primary_key=True)


class RepoAlias(SQLModel, table=True):
    """A peer's repo held here under another id (`local`): a repo of its id, homed elsewhere,
    was here first. Entries about `repo` said by `home` apply to `local`."""

    __tablename__ = "repo_alias"
    repo: str = Field(primary_key=True)  # its key at its home: type/namespace/name
    home: str = Field(primary_key=True)
    local: str = Field(unique=True)


class RepoRedirect(SQLModel, table=True):
    """An id a repo had before it was moved (renamed or transferred): requests naming it are
    redirected to the repo, until a repo is created under it again."""

    __tablename__ = "repo_redirect"
    repo: str = Field(primary_key=True)  # the old key: type/namespace/name
    repo_id: int = Field(index=True)
    moved_ms: int = Field(sa_type=BIG)


class ScanResult(SQLModel, table=True):
    """The safety verdict on a blob; blobs without a row are pending."""

    blake3: str = Field(primary_key=True)
    status: str  # clean | unsafe | error
    findings: str  # JSON list of strings
    scanned_ms: int = Field(sa_type=BIG)


class ModelHash(SQLModel, table=True):
    """The hashes generation tools write for a safetensors blob (`registry.domain.modelhashes`);
    a blob named `*.safetensors` without a row is pending. A row with `problem` set and no
    hashes: not a valid safetensors file (never hashed again)."""

    __tablename__ = "model_hash"
    blake3: str = Field(primary_key=True)
    tail_sha256: str | None = Field(default=None, index=True)  # AutoV3: its first 12 hex
    autov1: str | None = Field(default=None, index=True)
    sshs_model_hash: str | None = None  # kohya's claims, as the header gives them
    sshs_legacy_hash: str | None = None
    problem: str | None = None
    hashed_ms: int = Field(sa_type=BIG)


class ImageRecord(SQLModel, table=True):
    """What an image blob says made it (`registry.service.images`); an image file without a
    row is pending. `state`: read (generation data found), none (no metadata) or refused
    (unreadable or hostile; `problem` says why); `generation` is JSON. `kind`: image, or
    workflow (a ComfyUI workflow file, read for the model files it names)."""

    __tablename__ = "image_meta"
    blake3: str = Field(primary_key=True)
    state: str
    problem: str | None = None
    generation: str | None = None
    read_ms: int = Field(sa_type=BIG)
    kind: str = "image"


class ImageResource(SQLModel, table=True):
    """A model file an image's generation data names, looked up by hash or by name."""

    __tablename__ = "image_resource"
    image: str = Field(primary_key=True)  # the image's BLAKE3
    position: int = Field(primary_key=True)
    kind: str
    name: str
    name_key: str = Field(index=True)  # the base name, lower case, without a model extension
    hash: str | None = Field(default=None, index=True)  # lower case, as written
    weight: float | None = None


class SearchEntry(SQLModel, table=True):
    """A repo as the search index last saw it; a cache of its main branch, never the truth."""

    __tablename__ = "search_entry"
    repo_id: int = Field(primary_key=True)
    commit_id: str | None = None
    repo_updated_ms: int = Field(
        default=0, sa_type=BIG
    )  # the repo's updated_ms when indexed: a newer one means stale
    kind: str | None = Field(default=None, index=True)
    base_model: str | None = None  # as written
    base_model_key: str | None = Field(default=None, index=True)  # normalized, for filters
    license: str | None = None
    description: str = ""
    tags: str = "[]"  # JSON lists
    trigger_words: str = "[]"
    suggested_tags: str = "[]"
    complete: bool = True  # False while README.md is not stored here (a replica)
    indexed_ms: int = Field(sa_type=BIG)


class SearchTag(SQLModel, table=True):
    __tablename__ = "search_tag"
    __table_args__ = (Index("ix_search_tag_tag", "tag", "repo_id"),)
    repo_id: int = Field(primary_key=True)
    tag: str = Field(primary_key=True)


class Mirror(SQLModel, table=True):
    """A push target. `token` is kept to be used (sealed when the node has a credentials key:
    `registry.service.credentials`), never shown back."""

    name: str = Field(primary_key=True)
    kind: str  # hf | s3 | node
    url: str | None = None  # None: huggingface_hub's default endpoint (kind hf)
    token: str | None = Field(default=None, repr=False)
    repos: str = "*"  # glob over namespace/name
    created_ms: int = Field(sa_type=BIG)
    last_success_ms: int | None = Field(default=None, sa_type=BIG)
    last_error: str | None = None
    last_error_ms: int | None = Field(default=None, sa_type=BIG)
    pushed: int = 0  # outbox items completed


class MirrorOutbox(SQLModel, table=True):
    """A change still to push to a mirror; written in the transaction of the change."""

    __tablename__ = "mirror_outbox"
    mirror: str = Field(primary_key=True)
    serial: int = Field(primary_key=True, sa_type=BIG)  # the change-log entry to push
    repo: str = Field(index=True)
    kind: str
    attempts: int = 0
    next_ms: int = Field(default=0, sa_type=BIG)  # not before (backoff after a failure)
    last_error: str | None = None


class MirrorCommit(SQLModel, table=True):
    """Which commit on a Hub-like mirror carries one of ours (for tags and branches)."""

    __tablename__ = "mirror_commit"
    __table_args__ = (Index("ix_mirror_commit_remote", "mirror", "remote_id"),)
    mirror: str = Field(primary_key=True)
    commit_id: str = Field(primary_key=True)
    remote_id: str


class MirrorRollback(SQLModel, table=True):
    """A ref a push moved back past a commit this node no longer holds (after a restore from
    a backup), and the branch on the mirror that keeps where it pointed."""

    __tablename__ = "mirror_rollback"
    mirror: str = Field(primary_key=True)
    repo: str = Field(primary_key=True)  # repo key: model/namespace/name
    ref: str = Field(primary_key=True)
    lost_commit: str = Field(primary_key=True)  # ours, as the mirror names it
    new_commit: str | None = None  # where the push moved the ref (None: deleted it)
    kept_as: str  # the branch on the mirror now pointing where `ref` did
    at_ms: int = Field(sa_type=BIG)


class Lease(SQLModel, table=True):
    """Who runs a node-wide background job (a puller, the indexer, ...) when several processes
    share one database; a holder that stops renewing loses it when `expires_ms` passes."""

    name: str = Field(primary_key=True)
    holder: str  # the process (node/host/pid/random), or the node on an embedded database
    expires_ms: int = Field(sa_type=BIG)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model (sqlmodel's classes carry it untyped)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
