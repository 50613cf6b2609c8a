"""The node's identity and persisted secrets, read once at startup."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from registry.metadata.db import Database


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    epoch: str
    secret: str  # signs LFS upload URLs

    @classmethod
    def load(cls, db: Database, configured_id: str | None) -> NodeIdentity:
        default_id = configured_id or f"node-{uuid.uuid4().hex[:12]}"
        with db.write() as tx:  # stored on first use
            node_id = tx.values.setdefault("node_id", default_id)
            epoch = tx.values.setdefault("epoch", uuid.uuid4().hex)
            secret = tx.values.setdefault("secret", secrets.token_hex(32))
        if configured_id and configured_id != node_id:
            raise ValueError(
                f"This data directory belongs to node {node_id!r}, not {configured_id!r}; "
                "a node's id cannot change (its peers follow its change log by id)"
            )
        return cls(node_id, epoch, secret)
