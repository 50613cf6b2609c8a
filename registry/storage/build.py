"""The node's blob store, chosen from its settings by a plain match (no plugins).

Besides the backends themselves, this is the one module that names a backend class. It sits
beside the package's `__init__` rather than in it because the backends import the package
(`BlobInfo`, `Expected`), which therefore cannot import them back.
"""

from __future__ import annotations

from registry.settings import Settings
from registry.storage import BlobStore
from registry.storage.local import LocalBlobStore
from registry.storage.s3 import S3BlobStore


def build_blob_store(settings: Settings) -> BlobStore:
    """The S3 bucket `settings.blob_store` names (at `blob_store_endpoint`, if set), else the
    `store/` directory of the data dir."""
    match settings.blob_store:
        case None | "":
            return LocalBlobStore(settings.blob_dir)
        case url:
            return S3BlobStore(
                url,
                endpoint_url=settings.blob_store_endpoint,
                timeout=settings.blob_store_timeout,
            )
