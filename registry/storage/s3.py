"""Blobs in an S3 bucket (boto3; any S3-compatible store), for nodes that outgrow one disk.

Layout under `s3://bucket/prefix` (the same blob keys as a mirror bucket, mirror/layout.py)::

    {prefix}blobs/blake3/<hex[:2]>/<hex>   complete, verified blobs
    {prefix}uploads/<unix-ms>-<uuid>       large uploads in progress (multipart), never served
                                           (`modelyard gc` removes those older than its grace)
    {prefix}quarantine/<hex>               bytes set aside by a scrub (they do not hash to <hex>)

Visibility follows the local store's rule: a blob's key exists only once its bytes were
hashed and checked. Small uploads are buffered (at most one part) and put under the final key
in one PUT; large ones go up as a multipart upload under `uploads/`, which S3 shows to nobody
until it is completed, and are then copied server-side to the final key. Credentials and the
endpoint come from boto3's usual chain (`AWS_ENDPOINT_URL` for S3-compatible stores), unless
the store is given its own endpoint (`MODELYARD_BLOB_STORE_ENDPOINT`).

Each request is retried by botocore's standard mode (bounded attempts, exponential backoff with
jitter, on 500/503/SlowDown and throttling answers, timeouts and dropped connections: the layer
that knows S3's own retryable codes); past them the store raises BlobStoreUnavailableError,
which the node answers 503 with Retry-After. An upload that fails is never visible.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from registry.domain.digest import Digest, Hasher, Hashes
from registry.domain.errors import BlobNotFoundError, BlobStoreUnavailableError
from registry.domain.names import parse_s3_url
from registry.storage import BlobInfo, Expected
from registry.storage.s3client import s3_client, s3_errors

logger = logging.getLogger(__name__)
PART = 16 * 1024 * 1024  # multipart part size (S3's minimum is 5 MiB)
READ_CHUNK = 4 * 1024 * 1024
STALE_UPLOAD_SECONDS = 24 * 3600  # other processes may share the bucket: only old ones go
PRESIGNED_SECONDS = 3600  # how long a download redirect to the bucket stays valid
PROBE_SECONDS = 2.0  # a failing bucket's probe: its timeout, and how often at most
KNOWN_BLOBS = 100_000  # sizes of blobs seen stored, remembered (blobs never change)
_COPY = TransferConfig(multipart_threshold=1024 * 1024 * 1024, multipart_chunksize=256 * 1024**2)


class S3BlobStore:
    def __init__(
        self,
        url: str,
        client: Any | None = None,
        endpoint_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.s3 = client or s3_client(timeout, endpoint_url=endpoint_url)
        # One quick try, for telling whether a failing bucket answers again.
        quick = client or s3_client(
            min(timeout, PROBE_SECONDS), attempts=1, endpoint_url=endpoint_url
        )
        self._probe = quick
        self._answered = 0.0  # monotonic time of the bucket's last answer (or probe)
        self._probing = threading.Lock()
        # A blob once seen stored stays the same bytes, so `stat` answers it from here without
        # a HEAD: downloads and resolve HEADs stat every file they serve.
        self._known: dict[str, int] = {}
        self._failure: str | None = None  # the last request's error, until one succeeds

    def key_of(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/blake3/{digest.hex[:2]}/{digest.hex}"

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """botocore's errors as ours; remembers whether the bucket answered (`failing`)."""
        try:
            with s3_errors(self.url, what, BlobStoreUnavailableError):
                yield
        except BlobStoreUnavailableError as exc:
            self._failure = exc.message
            raise
        except BlobNotFoundError:
            self._failure, self._answered = None, time.monotonic()  # the bucket answered
            raise
        self._failure, self._answered = None, time.monotonic()

    def failing(self) -> str | None:
        """As the protocol says. Downloads are redirects to the bucket the node never sees
        fail, so when no request answered for PROBE_SECONDS, the bucket is asked (one quick
        HEAD, by one caller at a time): the state follows the bucket with or without traffic."""
        stale = time.monotonic() - self._answered >= PROBE_SECONDS
        if stale and self._probing.acquire(blocking=False):
            try:
                self._answered = time.monotonic()
                with self.errors("probing the bucket"):
                    self._probe.head_bucket(Bucket=self.bucket)
            except BlobStoreUnavailableError:
                pass  # still failing, as recorded
            finally:
                self._probing.release()
        return self._failure

    def aside_key_of(self, digest: Digest) -> str:
        return f"{self.prefix}quarantine/{digest.hex}"

    def stat(self, digest: Digest) -> BlobInfo | None:
        size = self._known.get(digest.hex)
        if size is not None:
            return BlobInfo(digest, size)
        size = self.head(digest)
        if size is None:
            return None
        if len(self._known) >= KNOWN_BLOBS:
            self._known.clear()  # bounded; refilled by the next stats
        self._known[digest.hex] = size
        return BlobInfo(digest, size)

    def head(self, digest: Digest) -> int | None:
        """The size of the object under the blob's key as the bucket has it now (no cache:
        another process may have set the blob aside)."""
        try:
            with self.errors(f"blob {digest}"):
                head = self.s3.head_object(Bucket=self.bucket, Key=self.key_of(digest))
        except BlobNotFoundError:
            return None
        return int(head["ContentLength"])

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """One GET (a missing blob raises here, not when iterated); S3 clips a range's end."""
        if end is not None and start >= end:
            if self.stat(digest) is None:
                raise BlobNotFoundError(f"Blob {digest} not found")
            return iter(())
        last = "" if end is None else str(end - 1)
        extra = {"Range": f"bytes={start}-{last}"} if start or end is not None else {}
        try:
            with self.errors(f"blob {digest}"):
                body = self.s3.get_object(Bucket=self.bucket, Key=self.key_of(digest), **extra)
        except BlobStoreUnavailableError:
            info = self.stat(digest) if start else None
            if info is not None and start >= info.size:
                return iter(())  # the range starts at or past the end (S3 answers 416)
            raise
        return self._chunks(digest, body["Body"])

    def _chunks(self, digest: Digest, body: Any) -> Iterator[bytes]:
        try:
            with self.errors(f"reading blob {digest}"):
                yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def local_path(self, digest: Digest) -> Path | None:  # noqa: ARG002 - nothing on disk
        return None

    def download_url(self, digest: Digest) -> str:
        """A presigned GET URL of the blob, valid for PRESIGNED_SECONDS (signed locally: no
        request is made, so a missing blob answers 404 only when the URL is fetched)."""
        return str(
            self.s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key_of(digest)},
                ExpiresIn=PRESIGNED_SECONDS,
            )
        )

    def writer(
        self,
        size_hint: int | None = None,
        *,
        sha256: bool = True,
        cache: bool = True,  # noqa: ARG002 - no page cache here
    ) -> S3BlobWriter:
        return S3BlobWriter(self, Hasher(size_hint, sha256=sha256))

    def delete(self, digest: Digest) -> None:
        self._known.pop(digest.hex, None)
        with self.errors(f"deleting blob {digest}"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.key_of(digest))

    def set_aside(self, digest: Digest) -> bool:
        self._known.pop(digest.hex, None)
        if self.head(digest) is None:
            return False
        key = self.key_of(digest)
        with self.errors(f"setting blob {digest} aside"):
            source = {"Bucket": self.bucket, "Key": key}
            self.s3.copy(source, self.bucket, self.aside_key_of(digest), Config=_COPY)
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    def drop_aside(self, digest: Digest) -> None:
        with self.errors(f"dropping the set-aside copy of {digest}"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.aside_key_of(digest))

    def iter_digests(self) -> Iterator[Digest]:
        return (info.digest for info in self.iter_blobs())

    def iter_blobs(self) -> Iterator[BlobInfo]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}blobs/blake3/"
        )
        with self.errors("listing blobs"):
            for page in pages:
                for item in page.get("Contents", []):
                    digest = Digest(item["Key"].rsplit("/", 1)[1])
                    yield BlobInfo(digest, int(item["Size"]), item["LastModified"].timestamp())

    def clear_uploads(self, older_than: float | None = None, *, dry_run: bool = False) -> int:
        """Abort multipart uploads (and drop staged copies) a crash left behind; only those
        older than `older_than` seconds (default STALE_UPLOAD_SECONDS), since other node
        processes may be uploading now. Age is read from the key (some S3-compatible stores
        report no real start time). Returns how many were (or, with `dry_run`, would be)
        removed."""
        cutoff = time.time() - (STALE_UPLOAD_SECONDS if older_than is None else older_than)
        removed = 0
        uploads = f"{self.prefix}uploads/"
        with self.errors("clearing uploads"):
            pending = self.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=uploads
            )
            for page in pending:
                for item in page.get("Uploads", []):
                    if _started(item["Key"]) < cutoff:
                        if not dry_run:
                            self.s3.abort_multipart_upload(
                                Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                            )
                        removed += 1
            staged = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=uploads
            )
            for page in staged:
                for item in page.get("Contents", []):
                    if _started(item["Key"]) < cutoff:
                        if not dry_run:
                            self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
                        removed += 1
        return removed


class S3BlobWriter:
    """Hashes one upload while it goes up; at most one part is held in memory."""

    def __init__(self, store: S3BlobStore, hasher: Hasher) -> None:
        self._store = store
        self._hasher = hasher
        self._buffer = bytearray()
        self._key = f"{store.prefix}uploads/{int(time.time() * 1000)}-{uuid.uuid4().hex}"
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        self._buffer += data
        while len(self._buffer) >= PART:
            self._send_part(bytes(self._buffer[:PART]))
            del self._buffer[:PART]

    def _send_part(self, body: bytes) -> None:
        s3, bucket = self._store.s3, self._store.bucket
        with self._store.errors("an upload part"):
            if self._upload_id is None:
                self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=self._key)[
                    "UploadId"
                ]
            number = len(self._parts) + 1
            answer = s3.upload_part(
                Bucket=bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self, expected: Expected) -> Hashes:
        try:
            hashes = self._hasher.result()
            expected.check(hashes)
            self._publish(hashes.blake3)
            return hashes
        except BaseException:
            self.abort()
            raise

    def _publish(self, digest: Digest) -> None:
        store, s3 = self._store, self._store.s3
        final = store.key_of(digest)
        if self._upload_id is None:  # small: one PUT under the final key, atomic in S3
            with store.errors(f"storing blob {digest}"):
                s3.put_object(Bucket=store.bucket, Key=final, Body=bytes(self._buffer))
            self._buffer = bytearray()
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer = bytearray()
        with store.errors(f"storing blob {digest}"):
            s3.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
            # Copied even when the key exists (same bytes, stored once): the size `stat`
            # remembers may be stale, as gc may have deleted the blob from another process.
            try:
                # Same bytes uploaded twice are stored once. Asked of the bucket, not the cache:
                # a blob set aside by another process's scrub must be written again.
                if store.head(digest) is None:
                    source = {"Bucket": store.bucket, "Key": self._key}
                    s3.copy(source, store.bucket, final, Config=_COPY)
            finally:
                s3.delete_object(Bucket=store.bucket, Key=self._key)

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            with self._store.errors("aborting an upload"):
                self._store.s3.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._key, UploadId=upload_id
                )
        except BlobStoreUnavailableError as exc:  # left for clear_uploads; never visible
            logger.warning("could not abort upload %s: %s", self._key, exc)


def _started(key: str) -> float:
    """When an upload under `uploads/<unix-ms>-<uuid>` began (0 for keys of another form)."""
    stamp = key.rsplit("/", 1)[-1].partition("-")[0]
    return int(stamp) / 1000 if stamp.isdigit() else 0.0
