"""What a node's blob store holds, read from the store the node was given (the data dir or an
S3 bucket), so tests about stored bytes hold on either (MODELYARD_TEST_BLOB_STORE)."""

from __future__ import annotations

from registry.domain.digest import Digest
from registry.settings import Settings
from registry.storage.build import build_blob_store
from registry.storage.local import LocalBlobStore
from registry.storage.s3 import S3BlobStore


def _store(settings: Settings) -> LocalBlobStore | S3BlobStore:
    """The node's store as its backend class: these helpers go behind its back."""
    store = build_blob_store(settings)
    assert isinstance(store, LocalBlobStore | S3BlobStore)
    return store


def _keys(settings: Settings, under: str) -> set[str]:
    """Every file (local) or key (S3) under `blobs/` or `uploads/` of the node's store, by its
    path relative to the store, whatever its name; S3 adds unfinished multipart uploads."""
    store = _store(settings)
    if isinstance(store, LocalBlobStore):
        root = store.root
        return {p.relative_to(root).as_posix() for p in (root / under).rglob("*") if p.is_file()}
    prefix = f"{store.prefix}{under}/"
    keys = set()
    for page in store.s3.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=prefix
    ):
        keys |= {item["Key"].removeprefix(store.prefix) for item in page.get("Contents", [])}
    pending = store.s3.list_multipart_uploads(Bucket=store.bucket, Prefix=prefix)
    return keys | {f"multipart:{item['Key']}" for item in pending.get("Uploads", [])}


def stored_blob_files(settings: Settings) -> set[str]:
    """Every file or key under the store's `blobs/` (stray ones included, not only digests)."""
    return _keys(settings, "blobs")


def upload_leftovers(settings: Settings) -> set[str]:
    """What uploads in progress keep in the store: files under `uploads/` (local); keys and
    unfinished multipart uploads under `uploads/` (S3)."""
    return _keys(settings, "uploads")


def set_aside_files(settings: Settings) -> set[str]:
    """What a scrub set aside: files (local) or keys (S3) under the store's `quarantine/`."""
    return _keys(settings, "quarantine")


def stored_bytes(settings: Settings, digest: Digest) -> bytes:
    """The bytes under a blob's key, read from the store (not through a node)."""
    return b"".join(build_blob_store(settings).open(digest))


def corrupt_stored_blob(settings: Settings, digest: Digest) -> bytes:
    """Flip one bit in the middle of a stored blob, behind the node's back (the file on disk,
    or the object overwritten through boto3); returns the corrupt bytes."""
    data = bytearray(stored_bytes(settings, digest))
    data[len(data) // 2] ^= 0x01
    overwrite_stored_blob(settings, digest, bytes(data))
    return bytes(data)


def overwrite_stored_blob(settings: Settings, digest: Digest, data: bytes) -> None:
    """Put `data` under a blob's key behind the node's back (the file, or the object)."""
    store = _store(settings)
    if isinstance(store, LocalBlobStore):
        store.path_of(digest).write_bytes(data)
    else:
        store.s3.put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=data)


def delete_stored_blob(settings: Settings, digest: Digest) -> None:
    """Remove a blob's bytes behind the node's back (its row stays)."""
    store = _store(settings)
    if isinstance(store, LocalBlobStore):
        store.path_of(digest).unlink()
    else:
        store.s3.delete_object(Bucket=store.bucket, Key=store.key_of(digest))
