"""Blob uploads: LFS batch negotiation, verified ingest, and blob visibility."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from registry.domain.access import Principal, require_write
from registry.domain.digest import Digest, Hashes, is_sha256
from registry.domain.errors import (
    BlobNotFoundError,
    BlobQuarantinedError,
    RegistryError,
    UnauthorizedError,
)
from registry.domain.names import RepoId
from registry.domain.records import BlobRecord
from registry.domain.tokens import sign, verify_signature
from registry.metadata.db import Database
from registry.service.discussions import pr_repo
from registry.service.disk import DiskSpace
from registry.service.identity import NodeIdentity
from registry.service.quarantine import Quarantine
from registry.service.repos import writable_repo
from registry.storage import BlobInfo, BlobStore, BlobWriter, Expected, put


@dataclass(frozen=True)
class LfsObject:
    oid: str
    size: int


@dataclass(frozen=True)
class LfsAnswer:
    oid: str
    size: int
    upload: bool
    error: str | None = None
    grant: str | None = None  # for an upload: the signed query string its URL carries


LFS_GRANT_SECONDS = 24 * 3600  # how long an LFS upload URL from the batch stays valid


class UploadService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        node: NodeIdentity,
        quarantine: Quarantine,
        disk: DiskSpace,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node
        self._quarantine = quarantine
        self._disk = disk

    def lfs_batch(
        self, principal: Principal, repo: RepoId, objects: list[LfsObject], *, for_pr: bool = False
    ) -> list[LfsAnswer]:
        """Upload grants; `for_pr` (no branch named: a pull request's files) allows any
        contributor, since a PR's commit never reaches a branch without a writer's merge."""
        with self._db.read() as tx:
            if for_pr:
                pr_repo(tx, principal, repo, self._node)
            else:
                writable_repo(tx, principal, repo, self._node)
        answers = [self._answer(o) for o in objects]
        # Refused before any byte is sent when the whole upload cannot fit (507, not retried
        # by the Hub client), rather than part way through (and then again, for each retry).
        self.require_room(sum(a.size for a in answers if a.upload))
        reused = {a.oid for a in answers if not a.upload and a.error is None}
        if reused:
            # The client will not send these: mark them wanted so gc keeps them until its
            # commit (within gc's grace period), then look again in case gc took one before.
            self._want_sha256(reused)
            answers = [
                self._answer(o) if o.oid in reused else a
                for o, a in zip(objects, answers, strict=True)
            ]
        expires = str(int(time.time()) + LFS_GRANT_SECONDS)
        return [replace(a, grant=self._grant(a, expires)) if a.upload else a for a in answers]

    def _grant(self, answer: LfsAnswer, expires: str) -> str:
        sig = sign(self._node.secret, answer.oid, str(answer.size), expires)
        return f"size={answer.size}&expires={expires}&sig={sig}"

    def lfs_upload_wanted(self, oid: str, size: int, expires: str, sig: str) -> bool:
        """Whether an LFS upload granted by the batch must send its bytes (False: they are
        stored already, and now marked wanted).

        Raises:
            UnauthorizedError: the grant's signature is wrong or it has expired.
        """
        if not verify_signature(self._node.secret, sig, oid, str(size), expires) or (
            int(expires) < time.time()
        ):
            raise UnauthorizedError(
                "Upload URL signature is invalid or expired; ask the batch endpoint for a new one"
            )
        return not self.reuse_sha256(oid, size)

    def _answer(self, obj: LfsObject) -> LfsAnswer:
        if not is_sha256(obj.oid) or obj.size < 0:
            return LfsAnswer(obj.oid, obj.size, False, "oid must be 64 lowercase hex, size >= 0")
        return LfsAnswer(obj.oid, obj.size, not self.has_sha256(obj.oid, obj.size))

    def has_sha256(self, sha256: str, size: int | None = None) -> bool:
        with self._db.read() as tx:
            blob = tx.blobs.by_sha256(sha256)
            held = blob is not None and tx.quarantine.holds(blob.digest)
        return (
            blob is not None
            and not held
            and (size is None or blob.size == size)
            and self._blobs.stat(blob.digest) is not None
        )

    def reuse_sha256(self, sha256: str, size: int) -> bool:
        """Whether an upload may skip sending a blob stored already; if so it is marked wanted,
        so gc keeps it for its grace period."""
        if not self.has_sha256(sha256, size):
            return False
        self._want_sha256({sha256})
        return self.has_sha256(sha256, size)  # gc may have taken it just before

    def _want_sha256(self, sha256s: set[str]) -> None:
        """Mark blobs wanted now, before an upload relies on bytes already stored: gc keeps
        an unreferenced blob for its grace period after this."""
        with self._db.write(invalidates=False) as tx:  # no reader caches these times
            tx.blobs.want_sha256(sha256s)

    def reuse(self, principal: Principal, digest: Digest) -> BlobRecord | None:
        """`stored`, for a native upload that then skips sending the blob: marks it wanted.

        Raises:
            UnauthorizedError, ForbiddenError: a native upload needs a write token (of any
                namespace: a blob belongs to no repo until a commit names it).
        """
        require_write(principal, principal.user or "")
        if self.stored(digest) is None:
            return None
        with self._db.write(invalidates=False) as tx:
            tx.blobs.want([digest])
        return self.stored(digest)

    def stored(self, digest: Digest) -> BlobRecord | None:
        """The blob's record if it is stored, complete and not held (a held blob's bytes
        failed verification: writing it again is how it is repaired)."""
        with self._db.read() as tx:
            blob = tx.blobs.get(digest)
            held = tx.quarantine.holds(digest)
        if blob is None or held or self._blobs.stat(digest) is None:
            return None
        return blob

    def servable(self, digest: Digest) -> BlobInfo | None:
        """The blob's size if its bytes may be served: stored and not held. Asked of the
        database on every download, so a hold made by another process (`modelyard verify`)
        stops the very next one."""
        return None if self._quarantine.held(digest) else self._blobs.stat(digest)

    def require_servable(self, digest: Digest, missing: RegistryError) -> BlobInfo:
        """As `servable`; raises BlobQuarantinedError for a held blob, `missing` when the
        bytes are not stored."""
        held = self._quarantine.get(digest)
        if held is not None:
            raise BlobQuarantinedError(
                f"Blob {digest} failed verification on this node ({held.reason}: "
                f"{held.detail}); it is quarantined, never served, until a good copy is back",
                detail={"blake3": digest.hex, "reason": held.reason},
            )
        info = self._blobs.stat(digest)
        if info is None:
            raise missing
        return info

    def require_room(self, size: int, what: str = "this upload") -> None:
        """Refuse, before any byte is sent, uploads that would not leave the disk's reserve.

        Raises:
            InsufficientStorageError: they would not (507).
        """
        self._disk.require_room(size, what)

    def writer(self, size: int | None, *, sha256: bool = True, cache: bool = True) -> BlobWriter:
        """A writer for an upload of `size` bytes (if known); `cache=False` for bytes no one
        reads soon (see BlobStore.writer).

        Raises:
            InsufficientStorageError: it would not leave the disk's reserve free.
        """
        if size is not None:
            self.require_room(size)
        return self._blobs.writer(size, sha256=sha256, cache=cache)

    def ingest(self, chunks: Iterable[bytes], expected: Expected, *, sha256: bool = True) -> Hashes:
        """Store a stream of bytes as a verified blob and record it (`sha256=False`: bytes no
        one looks up by SHA-256, such as Xet xorbs; recorded with an empty one)."""
        if expected.size is not None:
            self.require_room(expected.size, "a blob fetched for this node")
        hashes = put(self._blobs, expected, chunks, sha256=sha256)
        self._record(hashes)
        return hashes

    def complete(self, writer: BlobWriter, expected: Expected) -> Hashes:
        """Verify and publish an upload, then record it; raises on any mismatch."""
        hashes = writer.commit(expected)
        self._record(hashes)
        return hashes

    def fill_sha256(self, digest: Digest) -> bool:
        """Hash a blob stored without its SHA-256 (an eager fetch defers it: SHA-256 runs at a
        third of BLAKE3's speed and would cap catch-up) and record it. False: it is gone."""
        with self._db.read() as tx:
            record = tx.blobs.get(digest)
        if record is not None and record.sha256:  # filled already (queued twice)
            return True
        info = self._blobs.stat(digest)
        if info is None:
            return False
        hasher = hashlib.sha256()
        try:
            for chunk in self._blobs.open(digest):
                hasher.update(chunk)
        except BlobNotFoundError:  # removed meanwhile (gc)
            return False
        with self._db.write() as tx:
            tx.blobs.record(digest, hasher.hexdigest(), info.size, None)
        return True

    def lacking_sha256(self, limit: int) -> list[Digest]:
        """Blobs in some commit stored without their SHA-256 (see `fill_sha256`)."""
        with self._db.read() as tx:
            return tx.blobs.lacking_sha256(limit)

    def _record(self, hashes: Hashes) -> None:
        with self._db.write() as tx:
            tx.blobs.record(hashes.blake3, hashes.sha256, hashes.size, hashes.git_sha1)
            held = tx.quarantine.holds(hashes.blake3)
        if held:  # these bytes may be what repairs it, if they reached the blob's key
            self._quarantine.lift_if_good(hashes.blake3, hashes.size)

    def readable(self, principal: Principal, digest: Digest) -> bool:
        """Whether the principal may read a blob: it is in a repo they can see, or it is in
        no repo at all and they hold a valid token (an upload not yet committed)."""
        if principal.is_admin:
            return True
        with self._db.read() as tx:
            visible = tx.blobs.in_visible_repo(digest, principal)
        return visible if visible is not None else not principal.anonymous
