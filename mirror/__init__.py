"""Mirrors and the resilient client: push to S3, the Hub and other nodes; download from
whichever source is alive, verifying every byte.

    from mirror import download_repo
    result = download_repo("alice/my-lora@v1", "./my-lora",
                           ["http://node-a:8000", "s3://models-bucket/mirror", "hf:alice/my-lora"])
"""

from __future__ import annotations

from mirror.downloader import Downloader, DownloadResult, Progress, download_repo
from mirror.sources import (
    FlaggedFile,
    HubSource,
    Location,
    NodeSource,
    S3Source,
    ScanReport,
    Source,
    parse_source,
)
from registry.client import RetryPolicy
from registry.domain.errors import AllSourcesFailedError

__all__ = [
    "AllSourcesFailedError",
    "DownloadResult",
    "Downloader",
    "FlaggedFile",
    "HubSource",
    "Location",
    "NodeSource",
    "Progress",
    "RetryPolicy",
    "S3Source",
    "ScanReport",
    "Source",
    "download_repo",
    "parse_source",
]
