"""Generation metadata of the images this node holds, read in the background so pages and
lookups can say what made each image and which model files it used.

Theory of operation: the to-do list is derived from state, as the safetensors hash job's is
(`registry.service.modelhashes`): blobs stored here (recorded, not quarantined) that some tree
names `*.png`, `*.jpg`, `*.jpeg` or `*.webp`, in any case, and that have no `image_meta` row.
A pass takes up to `batch` of them and reads each with `read_generation` (a few chunks or
segments, capped; pixels are never decoded), from the blob's file when the store has one,
else through ranged reads. It records per blob: `read` with the generation data and one row
per model file named; `none` (no generation data); or `refused` with why (not an image, cut
short, a bomb over the caps). Uploads never wait for it: an image is `pending` until read. A
restart loses nothing (what was not recorded is still pending), and the same bytes are read
once whatever their paths. JSON files (`*.json`) are read the same way for a ComfyUI
workflow (`registry.domain.workflow`: its loaders and embeddings are its resources, kind
`workflow`); most JSON files hold none and are recorded `none`, one over the workflow caps
too (with why), one naming a model path that could escape its folder `refused`.
Resources are stored as written; which files they name is decided
when asked (`registry.service.madewith`), so a LoRA that arrives later links without a re-read.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict

from registry.domain.clock import now_ms
from registry.domain.comfyui import KINDS
from registry.domain.digest import Digest
from registry.domain.errors import (
    MACHINE_FAULTS,
    BlobNotFoundError,
    GenerationParseError,
    WorkflowInvalidError,
    WorkflowTooLargeError,
)
from registry.domain.generation import Generation, Resource
from registry.domain.workflow import MAX_BYTES, parse_workflow
from registry.metadata.db import Database
from registry.service.idle import IdleWatch
from registry.service.imagemeta import ImageMeta, read_generation
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
BUFFER = 64 * 1024  # bytes a ranged read fetches at least (chunk headers are 8 bytes)
# What the record keeps of a generation (resources go to rows of their own).
KEPT = ("source", "prompt", "negative_prompt", "sampler", "scheduler", "steps", "cfg", "seed")


class ImageService:
    def __init__(self, db: Database, blobs: BlobStore, batch: int = 20) -> None:
        self._db = db
        self._blobs = blobs
        self._batch = batch
        self._idle = IdleWatch()
        self.version = 0  # moves with every image recorded: cached answers counting them expire

    def run_once(self) -> int:
        """Read up to `batch` pending images; returns how many were recorded."""
        with self._db.read() as tx:  # what moved is read first: later writes move it again
            seen = (tx.changes.head(), tx.blobs.count())
            if self._idle.unchanged(seen):
                return 0
            pending = tx.images.pending(self._batch)
        self._idle.found(bool(pending), seen)
        recorded = sum(self._read(digest) for digest in pending)
        if recorded:
            self.version += 1
            logger.debug("image metadata recorded blobs=%d", recorded)
        return recorded

    def pending(self, limit: int = 100) -> list[Digest]:
        """Image blobs stored here and not read yet."""
        with self._db.read() as tx:
            return tx.images.pending(limit)

    def _read(self, digest: Digest) -> int:
        """Read one image and record what it says; 0 when its bytes are not here (gc took
        them since it was listed): then it is no longer pending either."""
        info = self._blobs.stat(digest)
        if info is None:
            return 0
        kind, body = "image", None
        resources: tuple[Resource, ...] = ()
        try:
            if _json(b"".join(self._blobs.open(digest, 0, min(info.size, 64)))):
                kind = "workflow"
                state, problem, resources = self._workflow(digest, info.size)
            else:
                state, problem, generation = _outcome(self._meta(digest, info.size))
                if generation is not None:
                    body, resources = json.dumps(_kept(generation)), generation.resources
        except GenerationParseError as exc:
            state, problem = "refused", str(exc.detail.get("reason", exc.message))
        except BlobNotFoundError:
            return 0
        except MACHINE_FAULTS:
            raise  # the disk or the database: the worker pauses, the blob stays pending
        except Exception as exc:  # recorded, so that one bad blob is not read every pass
            state, problem = "refused", f"reading failed: {type(exc).__name__}"
            logger.exception("image metadata not read digest=%s", digest)
        with self._db.write() as tx:
            tx.images.record(digest, state, problem, body, resources, now_ms(), kind)
        return 1

    def _workflow(self, digest: Digest, size: int) -> tuple[str, str | None, tuple[Resource, ...]]:
        """A JSON file's outcome: `read` with the model files a ComfyUI workflow names, `none`
        (not a workflow, or too large to be one), `refused` (a name escaping its folder)."""
        if size > MAX_BYTES:
            return "none", f"{size} bytes, over the workflow cap of {MAX_BYTES}", ()
        try:
            needs = parse_workflow(b"".join(self._blobs.open(digest))).requirements
        except WorkflowTooLargeError as exc:
            return "none", exc.message, ()
        except WorkflowInvalidError as exc:
            if "reason" in exc.detail:  # a model name that could escape its folder
                return "refused", exc.message, ()
            return "none", None, ()  # JSON, but no workflow (a config, a tokenizer)
        found = dict.fromkeys(Resource(KINDS[r.folder], r.filename, None, r.weight) for r in needs)
        return "read", None, tuple(found)

    def _meta(self, digest: Digest, size: int) -> ImageMeta:
        path = self._blobs.local_path(digest)
        if path is not None:
            with path.open("rb") as fp:
                return read_generation(fp, size)
        with io.BufferedReader(_Ranged(self._blobs, digest, size), BUFFER) as fp:
            return read_generation(fp, size)


def _json(head: bytes) -> bool:
    """Whether a file starts as a JSON document would (no image does)."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] in (b"{", b"[")


def _outcome(meta: ImageMeta) -> tuple[str, str | None, Generation | None]:
    """read (generation data found, with what was skipped), refused (none found, and the
    file was broken or over a cap somewhere) or none (an image without generation data)."""
    problems = "; ".join(meta.problems) or None
    if meta.generation is not None:
        return "read", problems, meta.generation
    return ("refused", problems, None) if problems else ("none", None, None)


def _kept(generation: Generation) -> dict[str, object]:
    found = asdict(generation)
    kept: dict[str, object] = {k: found[k] for k in KEPT}
    kept["size"] = (
        [generation.width, generation.height] if generation.width and generation.height else None
    )
    return kept


class _Ranged(io.RawIOBase):
    """A blob read through ranged reads of the blob store (an S3 store has no file)."""

    def __init__(self, blobs: BlobStore, digest: Digest, size: int) -> None:
        self._blobs, self._digest, self._size, self._pos = blobs, digest, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override] # any buffer
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        n = 0
        for chunk in self._blobs.open(self._digest, self._pos, end):
            buffer[n : n + len(chunk)] = chunk
            n += len(chunk)
        self._pos += n
        return n
