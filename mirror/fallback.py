"""The node's mirrors as a last resort for bytes it lacks (after every peer): S3 buckets and
other nodes by BLAKE3, a Hub by the path of a public repo holding the file. Whatever comes
back is verified by BLAKE3 before it is stored or served (`sync.fetcher` does)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from urllib.parse import quote

import httpx

from registry.client import RegistryClient, RetryPolicy, raise_for_error
from registry.client.redirects import RedirectGuard
from registry.domain.access import ANONYMOUS
from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError
from registry.domain.manifest import ManifestFile
from registry.service.lookup import LookupService
from registry.service.mirrors import MirrorConfig, MirrorService

logger = logging.getLogger(__name__)
Locate = Callable[[Digest], list[tuple[str, str, str]]]  # (repo type, namespace/name, path)


def public_copies(lookup: LookupService) -> Locate:
    """Where public repos hold a blob: how a Hub mirror is asked for bytes by path."""

    def locate(digest: Digest) -> list[tuple[str, str, str]]:
        hits = lookup.by_hash(ANONYMOUS, f"blake3:{digest.hex}", limit=5)
        return [(h.repo_type, h.repo, h.path) for h in hits]

    return locate


class _MirrorBlobs:
    def __init__(self, config: MirrorConfig, locate: Locate, allow_private: bool) -> None:
        self._config = config
        self._locate = locate
        self._allow_private = allow_private
        self.name = f"mirror {config.name}"

    def bad_bytes(self, error: str) -> None:
        logger.warning("mirror served wrong bytes mirror=%s %s", self._config.name, error)

    def open_blob(self, digest: Digest, size: int) -> AbstractContextManager[Iterator[bytes]]:
        match self._config.kind:
            case "s3":
                return self._from_bucket(digest, size)
            case "node":
                client = RegistryClient(
                    self._config.url or "",
                    token=self._config.token,
                    retry=RetryPolicy(2),
                    allow_private_redirects=self._allow_private,
                )
                return _closing(client, client.open_blob(digest, size))
        return self._from_hub(digest)

    @contextmanager
    def _from_bucket(self, digest: Digest, size: int) -> Iterator[Iterator[bytes]]:
        from mirror.s3_target import S3Bucket

        yield S3Bucket(self._config.url or "").open(ManifestFile("", size, digest.hex, None))

    @contextmanager
    def _from_hub(self, digest: Digest) -> Iterator[Iterator[bytes]]:
        from huggingface_hub import constants

        endpoint = (self._config.url or constants.ENDPOINT).rstrip("/")
        headers = {"authorization": f"Bearer {self._config.token}"} if self._config.token else {}
        guard = RedirectGuard(self._allow_private)
        with httpx.Client(
            headers=headers, timeout=30, follow_redirects=True, event_hooks={"response": [guard]}
        ) as http:
            for repo_type, repo, path in self._locate(digest):
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                url = f"{endpoint}/{prefix}{repo}/resolve/main/{quote(path)}"
                with http.stream("GET", url) as response:
                    if response.status_code >= 400:
                        response.read()
                        continue
                    raise_for_error(response)
                    yield response.iter_bytes(1024 * 1024)
                    return
        raise BlobNotFoundError(f"{self.name} has no public copy of {digest}")


@contextmanager
def _closing(
    client: RegistryClient, opened: AbstractContextManager[Iterator[bytes]]
) -> Iterator[Iterator[bytes]]:
    try:
        with opened as chunks:
            yield chunks
    finally:
        client.close()


class MirrorBlobSources:
    """The current mirrors, as blob sources (read from the configuration on every call)."""

    def __init__(
        self, mirrors: MirrorService, locate: Locate, *, allow_private_redirects: bool = False
    ) -> None:
        self._mirrors = mirrors
        self._locate = locate
        self._allow_private = allow_private_redirects

    def __call__(self) -> list[_MirrorBlobs]:
        return [_MirrorBlobs(c, self._locate, self._allow_private) for c in self._mirrors.configs()]
