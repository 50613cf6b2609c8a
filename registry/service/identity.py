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
        node_id = db.node_value("node_id", default_id)
        if configured_id and configured_id != node_id:
            raise ValueError(
                f"This data directory belongs to node {node_id!r}, not {configured_id!r}; "
                "a node's id cannot change (its peers follow its change log by id)"
            )
        return cls(
            node_id,
            db.node_value("epoch", uuid.uuid4().hex),
            db.node_value("secret", secrets.token_hex(32)),
        )
