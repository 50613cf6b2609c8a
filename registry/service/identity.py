"""The node's identity and persisted secrets, read once at startup; and its history marker.

Theory of operation: a node's epoch names its history, and peers compare it with the one they
saw. A database restored from a backup holds an older history under the same epoch, so at
every start the node compares its database with `history.json` in its data dir: the
database's identity (`Database.identity`: a copied-back file or a restored Postgres database
is another one), and the head serial with its chain when the marker was written. If the
database is another one, or its log is behind or different there, the node takes a new epoch
(and notes when: `restored_ms`) before it serves anything, so its peers check what they read
of it (`sync.puller.Puller.resync`). The marker is written at start and at a clean stop.
A restore that puts back the data dir and the database as they were together, in place, is
still told by its peers, from the chains (the marker only makes it known sooner).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from registry.domain.clock import now_ms
from registry.metadata.db import Database

logger = logging.getLogger(__name__)
MARKER = "history.json"


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    epoch: str
    secret: str  # signs LFS upload URLs

    @classmethod
    def load(cls, db: Database, configured_id: str | None, data_dir: Path) -> NodeIdentity:
        default_id = configured_id or f"node-{uuid.uuid4().hex[:12]}"
        restored = _restored(db, data_dir / MARKER)
        with db.write() as tx:  # stored on first use
            node_id = tx.values.setdefault("node_id", default_id)
            epoch = tx.values.setdefault("epoch", uuid.uuid4().hex)
            secret = tx.values.setdefault("secret", secrets.token_hex(32))
            if restored:
                epoch = uuid.uuid4().hex
                tx.values.put("epoch", epoch)
                tx.values.put("restored_ms", str(now_ms()))
        if configured_id and configured_id != node_id:
            raise ValueError(
                f"This data directory belongs to node {node_id!r}, not {configured_id!r}; "
                "a node's id cannot change (its peers follow its change log by id)"
            )
        if restored:
            logger.warning("history restored (%s): new epoch %s", restored, epoch)
        write_marker(db, data_dir)
        return cls(node_id, epoch, secret)


def write_marker(db: Database, data_dir: Path) -> None:
    """Note the database's identity and its head with that entry's chain."""
    with db.read() as tx:
        head = tx.changes.head()
        at = tx.changes.at(head) if head else None
    marker = {"database": db.identity(), "serial": head, "chain": at.chain if at else None}
    path = data_dir / MARKER
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(marker))
    os.replace(temp, path)


def _restored(db: Database, path: Path) -> str | None:
    """Why the database is not the one the marker describes, or None."""
    try:
        marker = json.loads(path.read_text())
        database, serial, chain = marker["database"], int(marker["serial"]), marker["chain"]
    except FileNotFoundError:
        return None  # the first start (or a node from before markers)
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: written again below
    now = db.identity()
    # A marker written before SQLite identities named the file's generation is its prefix.
    if database != now and not now.startswith(f"{database}:"):
        return "the database is another one than at the last start"
    with db.read() as tx:
        head = tx.changes.head()
        at = tx.changes.at(serial) if serial else None
    if head < serial:
        return f"the change log ends at serial {head}, it had reached {serial}"
    if at is not None and chain is not None and at.chain != chain:
        return f"the change log holds another entry at serial {serial}"
    return None
