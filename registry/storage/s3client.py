"""An S3 client from boto3's usual chain, and botocore's errors as the registry's: shared by
the S3 blob store and the S3 mirror target."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.domain.errors import BlobNotFoundError, RegistryError, UpstreamError

_MISSING = {"404", "NoSuchKey", "NotFound"}


def s3_client(timeout: float = 30.0, attempts: int = 3, endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client from the usual credential chain; the endpoint too unless given."""
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
    )
    return boto3.client("s3", config=config, endpoint_url=endpoint_url)


@contextmanager
def s3_errors(
    where: str, what: str, unavailable: type[RegistryError] = UpstreamError
) -> Iterator[None]:
    """botocore errors as ours: a missing key is BlobNotFoundError, the rest `unavailable`."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise BlobNotFoundError(f"{what} is not in {where}") from exc
        raise unavailable(f"{where}: {what}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise unavailable(f"{where}: {what}: {exc}") from exc
