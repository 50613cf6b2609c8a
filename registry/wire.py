"""Request and response models of the HTTP API (native and HuggingFace-compatible)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def iso_ms(ms: int) -> str:
    """The only date format the Hub client parses: `YYYY-MM-DDTHH:MM:SS.fffZ`."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class ErrorOut(BaseModel):
    """Every error answer: a message, a machine-readable code, and details (also HEAD's headers
    `X-Error-Code` and `X-Error-Message`)."""

    error: str
    code: str
    detail: dict[str, object]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = "ok"  # degraded: alive, but cannot take writes now
    node_id: str
    version: str
    serial: int
    epoch: str
    writable: bool = True  # false: uploads and commits are refused until `problems` clear
    disk: str = "ok"  # ok | low | full | unwritable
    disk_free_bytes: int | None = None
    database: str = "ok"  # ok | unavailable
    blob_store: str = "ok"  # ok | failing
    problems: list[str] = []


class Readiness(BaseModel):
    """`/v1/health/ready`: 200 when the node can take writes, else 503 with why."""

    ready: bool
    disk: str
    database: str
    blob_store: str
    problems: list[str]


class BlobStored(BaseModel):
    blake3: str
    sha256: str
    size: int
    created: bool


class OrgOut(BaseModel):
    """An org in whoami's `orgs`, as the Hub names its fields."""

    type: Literal["org"] = "org"
    name: str
    fullname: str
    roleInOrg: str


class OrgIn(BaseModel):
    name: str = Field(max_length=200)


class MemberIn(BaseModel):
    role: str = Field(max_length=20, description="read, write or admin")


class MemberOut(BaseModel):
    user: str
    role: str


class OrgDetail(BaseModel):
    name: str
    members: list[MemberOut]


class OrgSummary(BaseModel):
    name: str
    role: str | None  # the asker's role; None for the admin where not a member


class HubMemberOut(BaseModel):
    """A member as the Hub's `/api/organizations/{org}/members` lists them."""

    type: Literal["user"] = "user"
    user: str
    fullname: str


class AccessToken(BaseModel):
    displayName: str
    role: Literal["read", "write"]


class AuthOut(BaseModel):
    type: Literal["access_token"] = "access_token"
    accessToken: AccessToken


class WhoAmI(BaseModel):
    type: Literal["user"] = "user"
    name: str
    fullname: str
    isAdmin: bool
    orgs: list[OrgOut] = []
    auth: AuthOut


class CreateRepoIn(BaseModel):
    name: str = Field(max_length=200)
    organization: str | None = Field(default=None, max_length=200)
    type: str | None = None
    private: bool | None = None
    visibility: Literal["public", "private", "protected"] | None = None


class DeleteRepoIn(BaseModel):
    name: str = Field(max_length=200)
    organization: str | None = Field(default=None, max_length=200)
    type: str | None = None


class MoveRepoIn(BaseModel):
    """`HfApi.move_repo`: both ids are `namespace/name`."""

    fromRepo: str = Field(max_length=200)
    toRepo: str = Field(max_length=200)
    type: str | None = None


class RepoUrl(BaseModel):
    url: str
    name: str
    id: str


class SiblingLfs(BaseModel):
    size: int
    sha256: str
    pointerSize: int


class Sibling(BaseModel):
    rfilename: str
    size: int | None = None
    blobId: str | None = None
    lfs: SiblingLfs | None = None


class SafetensorsOut(BaseModel):
    parameters: dict[str, int]
    total: int


class FileIssue(BaseModel):
    path: str
    status: str  # unsafe | error
    findings: list[str]


class SecurityStatus(BaseModel):
    scansDone: bool
    filesWithIssues: list[FileIssue]


class RepoInfo(BaseModel):
    id: str
    modelId: str | None = None
    author: str
    sha: str
    private: bool
    lastModified: str
    createdAt: str
    tags: list[str] = []
    downloads: int = 0
    likes: int = 0
    gated: str | bool = False  # "auto" or "manual" when gated
    disabled: bool = False
    cardData: dict[str, object] | None = None
    safetensors: SafetensorsOut | None = None
    securityRepoStatus: SecurityStatus | None = None
    modelyard: ModelMetadataOut | None = None  # huggingface_hub keeps it: info.modelyard
    siblings: list[Sibling] | None = None


class LfsInfo(BaseModel):
    oid: str
    size: int
    pointerSize: int


class LastCommit(BaseModel):
    id: str
    title: str
    date: str


class TreeItem(BaseModel):
    type: Literal["file", "directory"]
    oid: str
    size: int
    path: str
    lfs: LfsInfo | None = None
    xetHash: str | None = None  # a file this node serves through Xet
    lastCommit: LastCommit | None = None


class RefItem(BaseModel):
    name: str
    ref: str
    targetCommit: str


class RefsOut(BaseModel):
    branches: list[RefItem]
    tags: list[RefItem]
    converts: list[RefItem] = []
    pullRequests: list[RefItem] | None = None


class CommitAuthor(BaseModel):
    user: str


class FormattedCommit(BaseModel):
    """A commit's title and message as HTML (`expand[]=formatted`)."""

    title: str
    message: str


class CommitItem(BaseModel):
    id: str
    title: str
    message: str
    date: str
    authors: list[CommitAuthor]
    formatted: FormattedCommit | None = None


class BranchIn(BaseModel):
    startingPoint: str | None = Field(default=None, max_length=300)


class TagIn(BaseModel):
    tag: str = Field(max_length=300)
    message: str | None = None


class SquashIn(BaseModel):
    message: str | None = Field(default=None, max_length=10_000)


class SquashOut(BaseModel):
    commitId: str


class LfsFileOut(BaseModel):
    """An LFS file of a repo (the Hub's `LFSFileInfo`): `fileOid` is what deleting takes."""

    fileOid: str
    oid: str
    size: int
    filename: str  # one of its paths
    pushedAt: str  # when the first commit naming it was made
    ref: str | None = None


class LfsDeletionsIn(BaseModel):
    sha: list[str] = Field(max_length=1000)
    rewriteHistory: bool = True  # entries are taken out of every commit either way


class LfsDeleteIn(BaseModel):
    deletions: LfsDeletionsIn


class LfsDeleteOut(BaseModel):
    deleted: int  # tree entries taken out of the repo's commits


class PreuploadFileIn(BaseModel):
    path: str
    size: int = Field(ge=0)
    sample: str | None = None


class PreuploadIn(BaseModel):
    files: list[PreuploadFileIn] = Field(max_length=10_000)
    gitIgnore: str | None = None


class PreuploadFileOut(BaseModel):
    path: str
    uploadMode: Literal["lfs", "regular"]
    shouldIgnore: bool
    oid: str | None = None


class PreuploadOut(BaseModel):
    files: list[PreuploadFileOut]


class LfsObjectIn(BaseModel):
    oid: str = Field(max_length=128)
    size: int


class LfsRef(BaseModel):
    name: str


class LfsBatchIn(BaseModel):
    operation: Literal["upload", "download"]
    ref: LfsRef | None = None  # the Hub client leaves it out for a pull request
    objects: list[LfsObjectIn] = Field(max_length=10_000)
    transfers: list[str] | None = None
    hash_algo: str | None = None


class LfsAction(BaseModel):
    href: str
    expires_in: int | None = None


class LfsError(BaseModel):
    code: int
    message: str


class LfsObjectOut(BaseModel):
    oid: str
    size: int
    authenticated: bool = True
    actions: dict[str, LfsAction] | None = None
    error: LfsError | None = None


class LfsBatchOut(BaseModel):
    transfer: str = "basic"
    hash_algo: str = "sha256"
    objects: list[LfsObjectOut]


class LfsVerifyIn(BaseModel):
    oid: str
    size: int


class CommitOut(BaseModel):
    success: bool = True
    commitOid: str
    commitUrl: str
    commitMessage: str
    pullRequestUrl: str | None = None


class ValidateYamlIn(BaseModel):
    content: str
    repoType: str | None = None


class ValidateYamlOut(BaseModel):
    errors: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []


class FeedEntryOut(BaseModel):
    serial: int
    origin: str
    origin_serial: int
    kind: str
    repo: str
    private: bool
    body: dict[str, object]
    created_ms: int
    chain: str | None = None  # per-origin hash chain; None from nodes before chains


class FeedOut(BaseModel):
    node_id: str
    epoch: str
    head: int
    last_serial: int
    entries: list[FeedEntryOut]
    last_chain: str | None = None  # the chain of the entry at `last_serial` (send it back)


class StateDigestOut(BaseModel):
    """A digest of a node's replicable state, as a reader may see it (see /v1/sync/snapshot)."""

    digest: str
    repos: int


class SetAsideOut(BaseModel):
    """Entries of an origin's old history a node kept after the origin was restored."""

    entries: list[FeedEntryOut]
    last_serial: int  # the next page's `since`


class FeedPositionOut(BaseModel):
    """The entry at one serial of a node's log, as much as a peer needs to recognise it."""

    serial: int
    origin: str
    origin_serial: int
    chain: str | None


class PeerIn(BaseModel):
    url: str = Field(max_length=2000)
    token: str | None = Field(default=None, max_length=500)
    blobs: Literal["eager", "lazy"] = "eager"
    # snapshot: start from the peer's current state; replay: read its whole log from serial
    # 0; auto: snapshot when its head serial is above sync.snapshot_threshold (as the CLI)
    bootstrap: Literal["snapshot", "replay", "auto"] = "auto"


class CatchUpOut(BaseModel):
    """A peer's catch-up under way: entries still to apply from its feed, and the blobs of
    an `eager` peer still to fetch. Rates are over the last 10 s; an ETA is null while
    nothing moves and 0 when nothing is left. Blob counts restart with each new catch-up
    (the first blob wanted after the peer's queue was empty)."""

    entries_per_second: float  # entries applied (the cursor's advance)
    entries_eta_seconds: float | None  # (head - cursor) at that rate
    blobs_wanted: int  # blobs queued for fetching since this catch-up began
    blobs_fetched: int  # of which stored and verified
    bytes_wanted: int  # their total size
    bytes_fetched: int  # bytes received so far (partial blobs included)
    bytes_per_second: float
    bytes_eta_seconds: float | None  # (bytes_wanted - bytes_fetched) at that rate


class PeerOut(BaseModel):
    id: str
    url: str
    token_set: bool  # the token itself is never shown back
    blobs: str
    node_id: str | None
    epoch: str | None = None  # its /v1/health epoch as last heard: a new one after its restore
    state: str
    cursor: int
    head: int
    lag_serials: int
    lag_seconds: float
    last_success: str | None
    # A probe's or pull's error is cleared once the peer is up again; a bad blob's is kept,
    # so the time says whether it is news.
    last_error: str | None
    last_error_at: str | None = None
    bad_blobs: int
    # When its history was last found to have diverged from what was read of it (restored
    # from a backup), and how many entries of the old history this node keeps for recovery.
    diverged_at: str | None = None
    set_aside_entries: int = 0
    # Its repos whose ids are held here for another home, kept under qualified ids (/v1/status).
    collisions: int = 0
    catch_up: CatchUpOut | None = None


class MirrorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=96)
    kind: Literal["hf", "s3", "node"]
    url: str | None = Field(default=None, max_length=2000)  # s3://bucket/prefix, or http(s)
    token: str | None = Field(default=None, max_length=1000)
    repos: str = Field(default="*", max_length=500)  # glob over namespace/name


class MirrorRollbackOut(BaseModel):
    """A ref a push moved back past a commit this node no longer holds (a restore from a
    backup); `kept_as` is the mirror's branch still pointing where the ref did."""

    repo: str  # namespace/name
    repo_type: str
    ref: str
    lost_commit: str
    new_commit: str | None  # None: the push deleted the ref
    kept_as: str
    at: str


class MirrorMoveOut(BaseModel):
    """A repo the mirror covers that moved: moves are not pushed, so the mirror keeps it under
    `repo` (its old id) and gets its changes after the move under `to`."""

    repo: str  # namespace/name before the move
    repo_type: str
    to: str  # namespace/name now
    at: str


class MirrorOut(BaseModel):
    name: str
    kind: str
    url: str | None
    repos: str
    token_set: bool  # the token itself is never shown back
    state: str  # ok | pushing | failing
    backlog: int  # changes waiting to be pushed
    oldest_pending_seconds: float | None
    pushed: int
    last_success: str | None
    last_error: str | None  # kept after the mirror is ok again: its time says how old it is
    last_error_at: str | None = None
    rollbacks: int  # refs moved back past lost commits (each kept on the mirror)
    recent_rollbacks: list[MirrorRollbackOut]  # newest first
    moved_repos: list[MirrorMoveOut] = []  # newest first: moves the mirror did not follow


class TokenOut(BaseModel):
    """An access token as listed: never the token nor its hash."""

    id: int  # what `DELETE /v1/tokens/{id}` and `modelyard token revoke` take
    label: str
    user: str
    rights: Literal["read", "write", "admin"]
    created: str
    expires: str | None  # None: never
    expired: bool
    last_used: str | None  # written in batches: may be a few seconds late


class FileHitOut(BaseModel):
    repo: str
    repo_type: str
    ref: str
    commit: str
    path: str
    size: int
    blake3: str
    sha256: str
    # A safetensors file's AutoV3 and AutoV1 (lower case); null until the node has hashed
    # it, and for other files.
    autov3: str | None = None
    autov1: str | None = None


class ParentOut(BaseModel):
    # Defaults, so the schema holds where empty fields are left out (`response_model_exclude_none`).
    repo: str | None = None
    revision: str | None = None
    hash: str | None = None
    method: str | None = None
    ratio: float | None = None


class RelativeOut(BaseModel):
    repo: str
    depth: int


class LineageOut(BaseModel):
    repo: str
    parents: list[ParentOut]
    ancestors: list[RelativeOut]
    descendants: list[RelativeOut]


class UsageOut(BaseModel):
    """How many images of public repos on the node used a repo's model files."""

    images: int
    weights: list[float] | None = None  # [lowest, highest] weight written, if any


class ModelMetadataOut(BaseModel):
    """What a model is, from its card, plus what was read from its files."""

    kind: str | None = None  # defaults: see ParentOut
    base_model: str | None = None
    license: str | None = None
    description: str
    tags: list[str]
    trigger_words: list[str]
    lineage: list[ParentOut]
    suggested_tags: list[str]  # from training metadata (kohya `ss_tag_frequency`)
    training: dict[str, str]  # kohya `ss_*` keys: base model version, network dim/alpha ...
    scan: str | None = None  # worst verdict over the scanned files: pending, clean, error, unsafe
    used_by: UsageOut | None = None  # images on the node that used its files (model repos)
    # Its ComfyUI workflow files, each with the models it needs linked to public repos here.
    workflows: list[WorkflowFileOut] | None = None


class CandidateOut(BaseModel):
    repo: str
    repo_type: str
    ref: str
    commit: str
    path: str
    blake3: str


class LinkOut(BaseModel):
    """A model file an image names, and the files on the node it resolves to."""

    kind: str  # checkpoint, lora, embedding, controlnet, upscaler, vae, unet, clip
    name: str
    hash: str | None
    weight: float | None
    match: str  # hash | name | unresolved
    candidates: list[CandidateOut]


class WorkflowFileOut(BaseModel):
    """A ComfyUI workflow file of a repo, and the model files it needs."""

    path: str
    requirements: list[LinkOut]


class ImageOut(BaseModel):
    path: str
    blake3: str
    state: str  # pending | read | none | refused
    problem: str | None = None
    generation: dict[str, object] | None = None  # prompt, negative_prompt, sampler, steps, ...
    resources: list[LinkOut]


class UsedByOut(BaseModel):
    """An image or a ComfyUI workflow file that used a file: where it is, and what it named
    the file as."""

    repo: str
    repo_type: str
    ref: str
    path: str
    blake3: str
    kind: str
    name: str
    weight: float | None
    match: str  # hash | name
    what: str  # image | workflow


class LineageParentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str | None = None  # ns/name or ns/name@revision
    hash: str | None = None  # BLAKE3, SHA-256 or AutoV2 of a parent file
    method: str | None = None
    ratio: float | None = None


class MetadataIn(BaseModel):
    """Keys to set in the card's front matter; a key given as null is removed."""

    model_config = ConfigDict(extra="forbid")
    kind: str | None = None
    base_model: str | list[str] | None = None
    license: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    trigger_words: list[str] | None = None
    lineage: list[LineageParentIn] | None = None
    parent_commit: str | None = None  # refuse (412) if main moved past this commit


class MetadataCommitOut(BaseModel):
    commit: str
    metadata: ModelMetadataOut


class IndexLagOut(BaseModel):
    indexed_serial: int  # the change-log serial the index reflects
    head_serial: int
    behind_entries: int
    pending_repos: int  # repos found by the direct query because the index lags
    behind_seconds: float  # age of the oldest change not indexed yet
    complete: bool = True  # results always include what the index has not caught up with


class SearchHitOut(BaseModel):
    id: str
    type: str
    author: str
    private: bool
    kind: str | None = None  # defaults: see ParentOut
    base_model: str | None = None
    license: str | None = None
    description: str
    tags: list[str]
    trigger_words: list[str]
    suggested_tags: list[str]
    downloads: int
    lastModified: str
    createdAt: str
    scan: str | None  # pending | clean | error | unsafe (flagged, never hidden)
    indexed: bool  # False: found by the direct query over what is not indexed yet
    home: str = ""  # the node it is homed on, where it takes writes


class SearchOut(BaseModel):
    results: list[SearchHitOut]
    index: IndexLagOut
    next_offset: int | None


class RepoSettingsIn(BaseModel):
    """`HfApi.update_repo_settings`: older clients send `private`, newer ones `visibility`."""

    private: bool | None = None
    visibility: str | None = Field(default=None, max_length=20)
    gated: str | bool | None = None  # "auto", "manual" or false


class AccessRequestUser(BaseModel):
    user: str
    fullname: str


class AccessRequestOut(BaseModel):
    """One access request, as `HfApi.list_*_access_requests` reads it."""

    requestId: str
    status: str
    timestamp: str
    user: AccessRequestUser


class HandleAccessRequestIn(BaseModel):
    user: str | None = Field(default=None, max_length=100)
    requestId: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=20)
    rejectionReason: str | None = Field(default=None, max_length=1000)


class GrantAccessIn(BaseModel):
    user: str = Field(max_length=100)


class DiscussionIn(BaseModel):
    title: str = Field(max_length=500)
    description: str = Field(default="", max_length=65536)
    pullRequest: bool = False


class CommentIn(BaseModel):
    comment: str = Field(max_length=65536)


class CommentEditIn(BaseModel):
    content: str = Field(max_length=65536)


class TitleIn(BaseModel):
    title: str = Field(max_length=500)


class StatusIn(BaseModel):
    status: str
    comment: str | None = Field(default=None, max_length=65536)


class MergeIn(BaseModel):
    comment: str | None = Field(default=None, max_length=65536)


class Named(BaseModel):
    name: str


class DiscussionRepo(BaseModel):
    name: str
    type: str


class EventOut(BaseModel):
    """One event as the Hub client's `deserialize_event` reads it."""

    id: str
    type: str
    createdAt: str
    author: Named
    data: dict[str, Any]


class DiscussionOut(BaseModel):
    num: int
    title: str
    status: str
    createdAt: str
    isPullRequest: bool
    author: Named
    repo: DiscussionRepo
    pinned: bool = False


class DiscussionsOut(BaseModel):
    discussions: list[DiscussionOut]
    count: int
    start: int


class PullChanges(BaseModel):
    base: str
    mergeCommitId: str | None = None


class DiscussionDetailsOut(DiscussionOut):
    events: list[EventOut]
    changes: PullChanges | None = None
    filesWithConflicts: list[str] | None = None
    diff: str | None = None


class DiscussionCreatedOut(BaseModel):
    num: int
    url: str


class NewMessageOut(BaseModel):
    newMessage: EventOut


class UpdatedCommentOut(BaseModel):
    updatedComment: EventOut


class NewTitleOut(BaseModel):
    newTitle: EventOut


class NewStatusOut(BaseModel):
    newStatus: EventOut


class WorkflowCandidateOut(BaseModel):
    repo: str
    revision: str  # the commit the repo's default branch points at
    path: str
    blake3: str
    sha256: str
    size: int
    scan: str | None  # pending | clean | unsafe | error; null: a kind of file not scanned


class WorkflowRequirementOut(BaseModel):
    node_id: str
    node_type: str
    input: str
    filename: str
    folder: str  # ComfyUI's models/<folder>
    weight: float | None = None
    status: Literal["resolved", "ambiguous", "missing"]
    candidates: list[WorkflowCandidateOut]


class WorkflowResolutionOut(BaseModel):
    requirements: list[WorkflowRequirementOut]
