"""What the node's services need of replication to serve bytes they lack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from registry.domain.digest import Digest


class PullThrough(Protocol):
    """Bytes this node lacks, fetched from its peers and mirrors (implemented by `sync`)."""

    def stream(self, digest: Digest, size: int) -> Iterator[bytes] | None:
        """Stream the blob while storing it (relayed, not stored, when this node has no room
        for it); None when a fetch of it is already running."""
        ...

    def relay(self, digest: Digest, size: int) -> Iterator[bytes]:
        """Stream the blob from a peer or mirror, verified, without storing it (this node's
        blob store fails, or has no room); raises BlobUnavailableError when none has it."""
        ...

    def fetch_now(self, digest: Digest, size: int, timeout: float = 600) -> bool:
        """Fetch the blob (or join the fetch running) and wait; False if no source had it.
        Raises InsufficientStorageError when this node has no room to store it."""
        ...
