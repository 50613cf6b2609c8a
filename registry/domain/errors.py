"""Every error the registry raises, each with a stable machine-readable `code`.

Each family is listed with the codes it holds, its own first:

    RegistryError             internal
    ├── NotFoundError         NotFound, RepoNotFound (RepoMoved: a redirect), RevisionNotFound,
    │                         EntryNotFound, BlobNotFound, PeerNotFound, MirrorNotFound,
    │                         TokenNotFound, OrgNotFound, UserNotFound, DiscussionNotFound
    ├── ConflictError         Conflict, RepoExists, RefExists, ProtectedRef, HomeMismatch,
    │                         MirrorExists, ScrubRunning, DiscussionState, NameTaken (a user
    │                         and an org share no name; an org's name is taken once)
    ├── PreconditionError     PreconditionFailed, ParentMismatch (optimistic concurrency),
    │                         MergeConflict (a PR's files changed on its target too)
    ├── InvalidError          BadRequest, InvalidName, InvalidRevision,
    │                         DigestMismatch (XorbHashMismatch, VerificationMismatch,
    │                         FileHashMismatch, Sha256Mismatch), SizeMismatch, MissingObject,
    │                         XetUnsupported, XetInvalid, XorbMissing, BadSafetensors,
    │                         BadGenerationData (image metadata over its caps, or no image),
    │                         WorkflowInvalid (not a ComfyUI workflow, or a model name in
    │                         one that could escape its folder)
    ├── UnprocessableError    Unprocessable, InvalidPath (a repo path that is not one, 422 as
    │                         on the Hub); a peer's or mirror's URL or credential is refused:
    │                         InvalidUrl (UrlSchemeNotAllowed, UrlHasCredentials,
    │                         UrlHostMissing), InvalidCredential
    ├── TooLargeError         PayloadTooLarge, WorkflowTooLarge (a workflow over a cap: bytes,
    │                         nesting depth, nodes, values or string length)
    ├── UnsupportedMediaTypeError  UnsupportedMediaType (a body of a type the route does not read)
    ├── RangeNotSatisfiableError  RangeNotSatisfiable (no byte range asked for is in the file)
    ├── UnauthorizedError     Unauthorized (no or bad token), TokenRevoked, TokenExpired
    ├── ForbiddenError        Forbidden (token lacks the right)
    ├── PeerError             PeerError, PeerMismatch (wrong node id), CursorAhead,
    │                         HistoryDiverged (the entry at a cursor is not the one seen),
    │                         SnapshotMismatch (a snapshot that fails its digest)
    ├── StorageError          StorageFailure, BlobUnavailable, BlobQuarantined
    └── UpstreamError         UpstreamFailure, MirrorUnavailable, AllSourcesFailed,
                              RedirectRefused

    ValueError
    └── CredentialsKeyError   configuration, not a RegistryError (no code, never sent over
                              HTTP): stored credentials do not open with the configured key,
                              and the node refuses to start

`ERRORS_BY_CODE` maps each code to its class, for the client to decode answers with (a unit
test checks it holds every subclass). The HTTP mapping of families to status codes lives in
`registry.api.errors` only.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every registry error; `code` is stable and machine-readable."""

    code = "internal"
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, detail: dict[str, object] | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail or {}


class NotFoundError(RegistryError):
    code = "NotFound"


class RepoNotFoundError(NotFoundError):
    code = "RepoNotFound"
    default_message = "Repository not found"


class RepoMovedError(RepoNotFoundError):
    """The repo was renamed or transferred: `detail` names the id asked for (`from`) and its
    id now (`to`). Answered with a redirect; where no redirect fits, it is a RepoNotFound."""

    code = "RepoMoved"
    default_message = "Repository moved"


class RevisionNotFoundError(NotFoundError):
    code = "RevisionNotFound"


class EntryNotFoundError(NotFoundError):
    code = "EntryNotFound"


class BlobNotFoundError(NotFoundError):
    code = "BlobNotFound"


class PeerNotFoundError(NotFoundError):
    code = "PeerNotFound"


class MirrorNotFoundError(NotFoundError):
    code = "MirrorNotFound"


class TokenNotFoundError(NotFoundError):
    """No token of that id, or none the asker may see (another user's reads as missing)."""

    code = "TokenNotFound"


class OrgNotFoundError(NotFoundError):
    """No org of that name, or one the asker may not see."""

    code = "OrgNotFound"


class UserNotFoundError(NotFoundError):
    code = "UserNotFound"


class AccessRequestNotFoundError(NotFoundError):
    """No access request of that user to that gated repo."""

    code = "AccessRequestNotFound"


class DiscussionNotFoundError(NotFoundError):
    code = "DiscussionNotFound"
    default_message = "Discussion not found"


class ConflictError(RegistryError):
    code = "Conflict"


class NameTakenError(ConflictError):
    """The name is a user's or an org's already: users and orgs share one set of names."""

    code = "NameTaken"


class RepoExistsError(ConflictError):
    code = "RepoExists"


class RefExistsError(ConflictError):
    code = "RefExists"


class ProtectedRefError(ConflictError):
    code = "ProtectedRef"


class HomeMismatchError(ConflictError):
    code = "HomeMismatch"


class MirrorExistsError(ConflictError):
    code = "MirrorExists"


class DiscussionStateError(ConflictError):
    """A discussion is not in a state that allows this (merging a closed PR, say)."""

    code = "DiscussionState"


class ScrubRunningError(ConflictError):
    """Another process scrubs this node now (one scrub at a time, held by a lease)."""

    code = "ScrubRunning"


class PreconditionError(RegistryError):
    code = "PreconditionFailed"


class ParentMismatchError(PreconditionError):
    code = "ParentMismatch"


class MergeConflictError(PreconditionError):
    """A pull request's changed files were also changed on its target branch since."""

    code = "MergeConflict"


class InvalidError(RegistryError):
    code = "BadRequest"


class InvalidSettingError(InvalidError):
    """A repo setting with a value it cannot have (a gate other than auto, manual or false)."""

    code = "InvalidSetting"


class NotGatedError(InvalidError):
    """Access requests are for gated repos only."""

    code = "NotGated"


class InvalidNameError(InvalidError):
    code = "InvalidName"


class InvalidRevisionError(InvalidError):
    code = "InvalidRevision"


class DigestMismatchError(InvalidError):
    code = "DigestMismatch"


class XorbHashMismatchError(DigestMismatchError):
    """A xorb's chunks do not aggregate to the hash it was uploaded under."""

    code = "XorbHashMismatch"


class VerificationMismatchError(DigestMismatchError):
    """A shard's verification record does not match the chunks its term names."""

    code = "VerificationMismatch"


class FileHashMismatchError(DigestMismatchError):
    """A shard's file hash is not the hash of the chunks its terms name."""

    code = "FileHashMismatch"


class Sha256MismatchError(DigestMismatchError):
    """A file rebuilt from its terms does not have the SHA-256 the client claimed."""

    code = "Sha256Mismatch"


class SizeMismatchError(InvalidError):
    code = "SizeMismatch"


class MissingObjectError(InvalidError):
    code = "MissingObject"


class XetUnsupportedError(InvalidError):
    code = "XetUnsupported"


class XetInvalidError(InvalidError):
    """Xet bytes (a xorb, a shard, a hash in a path) that are not well formed: a bad chunk
    header, a truncated body, an unknown compression scheme, a chunk that decompresses to
    more or less than it declares, a count beyond the limits."""

    code = "XetInvalid"


class XorbMissingError(InvalidError):
    """A shard names a xorb this node does not hold (or the uploader may not use)."""

    code = "XorbMissing"


class SafetensorsError(InvalidError):
    """A safetensors header that is malformed or points outside its file."""

    code = "BadSafetensors"


class GenerationParseError(InvalidError):
    """Generation data (an image's text chunks, A1111 parameters, a ComfyUI graph) over its
    caps, or an image container too broken to read; `detail["reason"]` says which."""

    code = "BadGenerationData"


class WorkflowInvalidError(InvalidError):
    """A body that is not a ComfyUI workflow, or a model name in one that could escape its
    folder (absolute, `..`, a drive letter, NUL); `detail` names the node and input."""

    code = "WorkflowInvalid"


class UnprocessableError(RegistryError):
    """Well-formed input the node refuses to act on (a URL it will not contact, say)."""

    code = "Unprocessable"


class InvalidPathError(UnprocessableError):
    """A repo path that is not one (`./x`, `a/../b`, a backslash, `.git`): 422, as on the Hub."""

    code = "InvalidPath"


class InvalidUrlError(UnprocessableError):
    code = "InvalidUrl"


class UrlSchemeError(InvalidUrlError):
    code = "UrlSchemeNotAllowed"


class UrlCredentialsError(InvalidUrlError):
    code = "UrlHasCredentials"


class UrlHostError(InvalidUrlError):
    code = "UrlHostMissing"


class InvalidCredentialError(UnprocessableError):
    code = "InvalidCredential"


class RangeNotSatisfiableError(RegistryError):
    """No byte range a request asked for overlaps the file (`detail["size"]` is its size)."""

    code = "RangeNotSatisfiable"


class TooLargeError(RegistryError):
    code = "PayloadTooLarge"


class WorkflowTooLargeError(TooLargeError):
    """A ComfyUI workflow over one of the caps of `registry.domain.workflow`."""

    code = "WorkflowTooLarge"


class UnsupportedMediaTypeError(RegistryError):
    code = "UnsupportedMediaType"


class UnauthorizedError(RegistryError):
    code = "Unauthorized"


class TokenRevokedError(UnauthorizedError):
    """A token its owner or the admin revoked: a client should stop retrying with it."""

    code = "TokenRevoked"


class TokenExpiredError(UnauthorizedError):
    """A token past the expiry it was created with: its owner may create another."""

    code = "TokenExpired"


class ForbiddenError(RegistryError):
    code = "Forbidden"


class GatedRepoError(ForbiddenError):
    """A gated repo's file, for someone without an accepted access request (the Hub client
    raises GatedRepoError for this code)."""

    code = "GatedRepo"


class CrossOriginError(ForbiddenError):
    """A form posted from a page of another site."""

    code = "CrossOriginRefused"


class CsrfError(ForbiddenError):
    """A form without this session's CSRF token (an old page, or another site's form)."""

    code = "CsrfTokenInvalid"


class PeerError(RegistryError):
    code = "PeerError"


class PeerMismatchError(PeerError):
    code = "PeerMismatch"


class PeerIsSelfError(PeerError):
    """A peer URL that leads back to this node: a node never pulls from itself."""

    code = "PeerIsSelf"


class CursorAheadError(PeerError):
    code = "CursorAhead"


class HistoryDivergedError(PeerError):
    """The entry at the reader's cursor is not the one it read there: this node's log was
    restored or reset and written on since."""

    code = "HistoryDiverged"


class SnapshotMismatchError(PeerError):
    """A peer's snapshot whose lines do not match the count or digest of its trailer (or
    that ends before it): refused, nothing of it applied."""

    code = "SnapshotMismatch"


class StorageError(RegistryError):
    code = "StorageFailure"


class BlobUnavailableError(StorageError):
    code = "BlobUnavailable"


class InsufficientStorageError(RegistryError):
    """The disk holding the data dir is full, or an upload would leave less than the reserve
    kept for the database and the change log (HTTP 507)."""

    code = "InsufficientStorage"


class DataDirUnavailableError(InsufficientStorageError):
    """The data dir cannot be written (read-only, gone, or permission denied): like a full
    disk, nothing can be stored until an operator acts (507, which clients do not retry)."""

    code = "DataDirUnavailable"


class BlobStoreUnavailableError(StorageError):
    """The node's blob store (an S3 bucket) failed after bounded retries: slow, erroring or
    unreachable. Nothing was stored or changed by the request that got this."""

    code = "BlobStoreUnavailable"


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached, or is busy or read-only for now; nothing was changed
    by the request that got this (a write either committed before, or not at all)."""

    code = "DatabaseUnavailable"


class BlobQuarantinedError(StorageError):
    """The stored bytes failed verification (a scrub found them corrupt or gone): never
    served until a good copy is back."""

    code = "BlobQuarantined"


# Faults of the node's own machine rather than bugs: logged as one line, answered 503/507.
MACHINE_FAULTS = (InsufficientStorageError, DatabaseUnavailableError, BlobStoreUnavailableError)


class UpstreamError(RegistryError):
    """A mirror or download source failed (the node itself is fine)."""

    code = "UpstreamFailure"


class MirrorUnavailableError(UpstreamError):
    code = "MirrorUnavailable"


class RedirectRefusedError(UpstreamError):
    """A peer or mirror answered with a redirect the node will not follow."""

    code = "RedirectRefused"


class AllSourcesFailedError(UpstreamError):
    """Every source of a download failed; `detail["failures"]` says why, source by source."""

    code = "AllSourcesFailed"


class CredentialsKeyError(ValueError):
    """A stored credential cannot be opened with the configured key (or with none)."""


# Every RegistryError class by its code: what `registry.client.raise_for_error` decodes an
# answer into. Written out, not found by walking subclasses, so the client decodes the same
# codes whichever modules happen to be imported; tests/unit/test_error_codes.py checks it.
ERRORS_BY_CODE: dict[str, type[RegistryError]] = {
    cls.code: cls
    for cls in (
        RegistryError,
        NotFoundError,
        RepoNotFoundError,
        RepoMovedError,
        RevisionNotFoundError,
        EntryNotFoundError,
        BlobNotFoundError,
        PeerNotFoundError,
        MirrorNotFoundError,
        TokenNotFoundError,
        OrgNotFoundError,
        UserNotFoundError,
        AccessRequestNotFoundError,
        DiscussionNotFoundError,
        ConflictError,
        NameTakenError,
        DiscussionStateError,
        RepoExistsError,
        RefExistsError,
        ProtectedRefError,
        HomeMismatchError,
        MirrorExistsError,
        ScrubRunningError,
        PreconditionError,
        ParentMismatchError,
        MergeConflictError,
        InvalidError,
        InvalidSettingError,
        NotGatedError,
        InvalidNameError,
        InvalidPathError,
        InvalidRevisionError,
        DigestMismatchError,
        XorbHashMismatchError,
        VerificationMismatchError,
        FileHashMismatchError,
        Sha256MismatchError,
        SizeMismatchError,
        MissingObjectError,
        XetUnsupportedError,
        XetInvalidError,
        XorbMissingError,
        SafetensorsError,
        GenerationParseError,
        WorkflowInvalidError,
        UnprocessableError,
        InvalidUrlError,
        UrlSchemeError,
        UrlCredentialsError,
        UrlHostError,
        InvalidCredentialError,
        RangeNotSatisfiableError,
        TooLargeError,
        WorkflowTooLargeError,
        UnsupportedMediaTypeError,
        UnauthorizedError,
        TokenRevokedError,
        TokenExpiredError,
        ForbiddenError,
        GatedRepoError,
        CrossOriginError,
        CsrfError,
        PeerError,
        PeerIsSelfError,
        PeerMismatchError,
        CursorAheadError,
        HistoryDivergedError,
        SnapshotMismatchError,
        StorageError,
        BlobUnavailableError,
        BlobQuarantinedError,
        DatabaseUnavailableError,
        BlobStoreUnavailableError,
        InsufficientStorageError,
        DataDirUnavailableError,
        UpstreamError,
        MirrorUnavailableError,
        RedirectRefusedError,
        AllSourcesFailedError,
    )
}
