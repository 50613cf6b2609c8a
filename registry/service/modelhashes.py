"""AutoV3, AutoV1 and kohya's hashes of the safetensors files this node holds, made in the
background so images and workflows can name files by the hashes generation tools write.

Theory of operation: the to-do list is derived from state, as the scanner's is: blobs stored
here (recorded, not quarantined) that some tree names `*.safetensors`, in any case, and that
have no `model_hash` row. A pass takes up to `batch` of them, reads each once as a stream
(only its header is kept in memory) and records its hashes, or why it has none: a file that
is not valid safetensors is recorded so and never read again. Uploads, pull-through and eager
replication all end in a stored blob, so all are hashed; a restart loses nothing (what was
not recorded is still pending); hashes are of content, so a blob is hashed once whatever its
paths. The worker runs at the lowest CPU priority in one process of the node. After a pass
found nothing, the next ones only look again once the change log's head or the number of
stored blobs moved (`service.idle`): an idle node pays two small queries a pass, not a
walk of every tree.
"""

from __future__ import annotations

import logging

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import MACHINE_FAULTS, BlobNotFoundError, SafetensorsError
from registry.domain.modelhashes import SafetensorsHasher, SafetensorsHashes
from registry.metadata.db import Database
from registry.service.idle import IdleWatch
from registry.storage import BlobStore

logger = logging.getLogger(__name__)


class ModelHashService:
    def __init__(self, db: Database, blobs: BlobStore, batch: int = 20) -> None:
        self._db = db
        self._blobs = blobs
        self._batch = batch
        self._idle = IdleWatch()

    def run_once(self) -> int:
        """Hash up to `batch` pending blobs; returns how many were recorded."""
        with self._db.read() as tx:  # what moved is read first: later writes move it again
            seen = (tx.changes.head(), tx.blobs.count())
            if self._idle.unchanged(seen):
                return 0
            pending = tx.model_hashes.pending(self._batch)
        self._idle.found(bool(pending), seen)
        recorded = sum(self._hash(digest) for digest in pending)
        if recorded:
            logger.debug("safetensors hashes recorded blobs=%d", recorded)
        return recorded

    def pending(self, limit: int = 100) -> list[Digest]:
        """Safetensors blobs stored here and not hashed yet."""
        with self._db.read() as tx:
            return tx.model_hashes.pending(limit)

    def problem(self, digest: Digest) -> str | None:
        """Why a blob has no hashes (None: it has them, or it is pending)."""
        with self._db.read() as tx:
            return tx.model_hashes.problem(digest)

    def _hash(self, digest: Digest) -> int:
        """Hash one blob and record the outcome; 0 when its bytes are not here (gc took them
        since it was listed): then it is no longer pending either."""
        info = self._blobs.stat(digest)
        if info is None:
            return 0
        hasher = SafetensorsHasher(info.size)
        hashes: SafetensorsHashes | None = None
        problem = None
        try:
            for chunk in self._blobs.open(digest):
                hasher.update(chunk)
            hashes = hasher.result()
        except SafetensorsError as exc:
            problem = exc.message
            logger.info("not a valid safetensors file digest=%s problem=%s", digest, problem)
        except BlobNotFoundError:
            return 0
        except MACHINE_FAULTS:
            raise  # the disk or the database: the worker pauses, the blob stays pending
        except Exception as exc:  # recorded, so that one bad blob is not read every pass
            problem = f"hashing failed: {type(exc).__name__}: {exc}"
            logger.exception("safetensors hashes not made digest=%s", digest)
        if hashes is not None and hasher.received != info.size:
            logger.warning("blob read short digest=%s size=%d", digest, info.size)
            return 0
        with self._db.write() as tx:
            tx.model_hashes.record(digest, hashes, problem, now_ms())
        return 1
