"""The Xet protocol on this node: CAS access tokens, xorb and shard uploads with every check
of the spec, global-dedup answers, and file reconstructions.

Theory of operation: a xorb is verified on receipt (every chunk decoded under a size ceiling
and hashed, the hashes aggregated to the xorb's name), then stored as an ordinary blob of the
blob store and recorded with its chunk index. A shard names files as terms over stored xorbs;
each file's verification records and hash are recomputed from the stored chunk hashes, then
the file is rebuilt from its xorbs to check the client's SHA-256 claim and to compute its
BLAKE3. Only then, in one transaction, does it get a `xet_file` row and a `blob` row: from
then on it is a blob like any other (a commit may name it by SHA-256; `registry.storage.xet`
reads it back from its xorbs), stored once as chunks. A crash anywhere before that leaves
xorbs no file names (gc's business) and nothing visible; the client's retry finds its xorbs
stored and sends only the shard again.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from registry.domain.access import Principal, may_write, require_contributor, require_write
from registry.domain.digest import Digest
from registry.domain.errors import (
    FileHashMismatchError,
    NotFoundError,
    RegistryError,
    Sha256MismatchError,
    TooLargeError,
    UnauthorizedError,
    VerificationMismatchError,
    XetInvalidError,
    XetUnsupportedError,
    XorbMissingError,
)
from registry.domain.names import RepoId
from registry.domain.records import XetFileRecord, XorbRecord
from registry.domain.xet import grant as grants
from registry.domain.xet.hashes import file_hash, verification_hash
from registry.domain.xet.reconstruct import Plan, plan
from registry.domain.xet.shard import ShardFile, dedup_shard, is_dedup_eligible, parse_shard
from registry.domain.xet.types import ChunkEntry, XetHash, XorbRef
from registry.domain.xet.xorb import XorbReader, parse_xorb
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.cache import ReadCache
from registry.service.discussions import pr_repo
from registry.service.identity import NodeIdentity
from registry.service.repos import find_repo, writable_repo
from registry.service.settings import require_gate
from registry.service.uploads import UploadService
from registry.settings import XetSettings
from registry.storage import BlobStore, BlobWriter, Expected
from registry.storage.xet import Recipe, read_recipe

logger = logging.getLogger(__name__)
DISABLED = (
    "Xet is turned off on this modelyard node: set HF_HUB_DISABLE_XET=1 in your environment "
    "(before importing huggingface_hub) and retry; uploads then use plain Git LFS."
)
DEDUP_FILES = 8  # readable files naming a xorb whose xorbs one dedup answer lists
DEDUP_CHUNKS = 1 << 16  # chunks one dedup answer lists at most (3 MiB of records, ~4 GiB)
HINTED_TOKENS = 4096  # upload tokens remembered as answered with their repo's files


@dataclass(frozen=True)
class CasToken:
    token: str
    expires: int  # Unix seconds


@dataclass(frozen=True)
class XorbBytes:
    """Where a fetch URL's xorb bytes are: a blob of the blob store."""

    blake3: Digest
    size: int


class XorbUpload:
    """A xorb being received: each piece is checked (`XorbReader`) and written to the blob
    store (BLAKE3 alone: no one asks a xorb's SHA-256) as it arrives, so the bytes pass once;
    nothing is visible before `XetService.store_xorb`."""

    def __init__(self, xorb: XetHash, writer: BlobWriter) -> None:
        self.xorb = xorb
        self.reader = XorbReader()
        self.writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.reader.feed(data)
        self.writer.write(data)

    def abort(self) -> None:
        self.writer.abort()


class XetRecipes:
    """How the blob store reads a file uploaded through Xet: its terms and their xorbs, when
    every xorb is held here (`registry.storage.xet.Recipes`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def recipe(self, digest: Digest) -> Recipe | None:
        """None also while a scrub holds one of its xorbs (bytes that failed verification):
        the file is then fetched from a peer or mirror, like any blob held."""
        with self._db.read() as tx:
            file = tx.xet.file_of(digest)
            xorbs = tx.xet.xorbs(file.xorbs) if file is not None else {}
            held = any(tx.quarantine.holds(x.blake3) for x in xorbs.values())
        if file is None or len(xorbs) != len(file.xorbs) or held:
            return None
        return Recipe(file.size, file.terms, xorbs)


class XetService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        uploads: UploadService,
        node: NodeIdentity,
        settings: XetSettings,
        cache: ReadCache,
    ) -> None:
        self._db = db
        self._cache = cache
        self._blobs = blobs
        self._uploads = uploads
        self._node = node
        self._settings = settings
        self._hinted: OrderedDict[tuple[RepoId, str | None, int, str], None] = OrderedDict()
        self._hinted_lock = threading.Lock()

    @property
    def blobs(self) -> BlobStore:
        """The blob store xorbs are kept in (fetch URLs serve their bytes from it)."""
        return self._blobs

    # -- the Hub side: tokens -------------------------------------------------------------

    def token(
        self, principal: Principal, repo: RepoId, *, write: bool, create_pr: bool = False
    ) -> CasToken:
        """A CAS access token for one repo: read, or write (at the repo's home only; for a
        pull request, `create_pr`, any contributor may write).

        Raises:
            XetUnsupportedError: Xet is turned off on this node.
            RepoNotFoundError, UnauthorizedError, ForbiddenError, HomeMismatchError.
        """
        if not self._settings.enabled:
            raise XetUnsupportedError(DISABLED)
        pull_request = False
        with self._db.read() as tx:
            if write and create_pr:
                found = pr_repo(tx, principal, repo, self._node)
                pull_request = not may_write(principal, found.repo.namespace)
            elif write:
                writable_repo(tx, principal, repo, self._node)
            else:
                require_gate(tx, principal, find_repo(tx, principal, repo))
        expires = int(time.time() + self._settings.token_seconds)
        nonce = secrets.token_hex(8)
        grant = grants.CasGrant(
            repo,
            principal.user,
            principal.is_admin,
            write,
            expires,
            nonce,
            principal.orgs,
            pull_request,
        )
        return CasToken(grants.issue(self._node.secret, grant), expires)

    def grant(self, token: str | None) -> grants.CasGrant:
        """What a CAS request's Bearer token allows.

        Raises:
            XetUnsupportedError: Xet is turned off on this node.
            UnauthorizedError: no token, or not a valid one.
        """
        if not self._settings.enabled:
            raise XetUnsupportedError(DISABLED)
        if not token:
            raise UnauthorizedError("The CAS needs a Xet access token as a Bearer token")
        return grants.open_token(self._node.secret, token, time.time())

    # -- uploads --------------------------------------------------------------------------

    def has_xorb(self, grant: grants.CasGrant, xorb: XetHash) -> bool:
        """Whether the xorb is stored here (an upload may then skip sending it)."""
        _require_upload(grant)
        record = self._stored_xorb(xorb)
        if record is None:
            return False
        with self._db.write(invalidates=False) as tx:  # gc keeps it until the shard comes
            tx.blobs.want([record.blake3])
        return self._stored_xorb(xorb) is not None  # gc may have taken it just before

    def _stored_xorb(self, xorb: XetHash) -> XorbRecord | None:
        with self._db.read() as tx:
            record = tx.xet.xorb(xorb)
        if record is None or self._uploads.servable(record.blake3) is None:
            return None
        return record

    def xorb_upload(
        self, grant: grants.CasGrant, xorb: XetHash, length: int | None
    ) -> XorbUpload | None:
        """A new upload of the xorb (a body of `length` bytes, if told) to feed its body to,
        then `store_xorb`; None when it is stored already (the body may be dropped)."""
        _require_upload(grant)
        if self._stored_xorb(xorb) is not None:
            return None
        return XorbUpload(xorb, self._uploads.writer(length, sha256=False))

    def store_xorb(self, upload: XorbUpload) -> bool:
        """Check the whole xorb an upload received and store it; False when another upload
        stored it meanwhile.

        Raises:
            XetInvalidError, XorbHashMismatchError: nothing is stored.
        """
        try:
            chunks = upload.reader.finish(upload.xorb)
        except BaseException:
            upload.abort()
            raise
        hashes = self._uploads.complete(upload.writer, Expected(size=upload.reader.size))
        record = XorbRecord(upload.xorb, hashes.blake3, hashes.size, tuple(chunks))
        with self._db.write() as tx:
            added = tx.xet.add_xorb(record)
            tx.xet.index_chunks((c.hash, upload.xorb) for c in chunks if is_dedup_eligible(c.hash))
        return added

    def put_shard(self, grant: grants.CasGrant, data: bytes, max_file_bytes: int = 0) -> int:
        """Register the files of an upload shard, each verified in full (see the module
        docstring); 1 when a file was new, 0 when all were registered already.

        Args:
            max_file_bytes: the largest file taken (0: any), as for files uploaded whole; a
                shard names stored chunks, so its files may be far larger than its bytes.

        Raises:
            XetInvalidError, XorbMissingError, VerificationMismatchError,
            FileHashMismatchError, Sha256MismatchError, TooLargeError: nothing is registered.
        """
        _require_upload(grant)
        shard = parse_shard(data)
        records = [self._verified(f, max_file_bytes) for f in shard.files]
        added = False
        with self._db.write() as tx:
            for record, xorbs, first_chunk in records:
                if tx.xet.add_file(record, xorbs):
                    added = True
                tx.blobs.record(record.blake3, record.sha256, record.size, None)
                tx.xet.index_chunks(first_chunk)
        return int(added)

    def _verified(
        self, file: ShardFile, max_bytes: int
    ) -> tuple[XetFileRecord, list[XorbRef], list[tuple[XetHash, XetHash]]]:
        """The file's record, once its terms, verification records, hash and SHA-256 all hold
        against the xorbs stored here, and it is at most `max_bytes` long (0: any); with its
        xorbs, and its first chunk with that chunk's xorb (for the dedup index).

        A file registered here already, with every xorb held (a client retrying its shard,
        or uploading the same file again), is not rebuilt: its hash names its chunks, whose
        bytes were checked then; only the shard's SHA-256 claim must be the one recorded.
        """
        with self._db.read() as tx:
            known = tx.xet.file(file.file_hash)
            if known is not None and self._complete(tx, known):
                return self._known(file, known, max_bytes), [], []
            xorbs = tx.xet.xorbs({t.xorb for t in file.terms})
        chunks: list[ChunkEntry] = []
        size = 0
        for index, term in enumerate(file.terms):
            run = _term_chunks(xorbs, index, term.xorb, term.start, term.end, term.length)
            size += term.length  # the sum of the run's lengths (checked)
            if max_bytes and size > max_bytes:
                raise _too_large(file, max_bytes)
            if file.verifications is None or len(file.verifications) != len(file.terms):
                raise XetInvalidError("A shard's file needs one verification record per term")
            if verification_hash([c.hash for c in run]) != file.verifications[index]:
                raise VerificationMismatchError(
                    f"The verification record of term {index} of file {file.file_hash} does "
                    "not match the chunks it names",
                    detail={"file": file.file_hash.hex, "term": index},
                )
            chunks.extend(run)
        computed = file_hash([(c.hash, c.length) for c in chunks])
        if computed != file.file_hash:
            raise FileHashMismatchError(
                f"The terms of file {file.file_hash} hash to {computed}",
                detail={"expected": file.file_hash.hex, "received": computed.hex},
            )
        if file.sha256 is None:
            raise XetInvalidError(
                f"File {file.file_hash} has no SHA-256 (the shard's metadata extension): "
                "a commit names files by SHA-256"
            )
        b3, sha256 = self._rebuild_hashes(Recipe(size, file.terms, xorbs))
        if sha256 != file.sha256:
            raise Sha256MismatchError(
                f"File {file.file_hash} rebuilt from its chunks has SHA-256 {sha256}, "
                f"not {file.sha256} as the shard claims",
                detail={"expected": file.sha256, "received": sha256},
            )
        refs = [XorbRef(x.hash, x.blake3, x.size) for x in xorbs.values()]
        first = [(chunks[0].hash, file.terms[0].xorb)] if chunks else []
        return XetFileRecord(file.file_hash, b3, sha256, size, file.terms), refs, first

    @staticmethod
    def _complete(tx: Tx, file: XetFileRecord) -> bool:
        return tx.blobs.get(file.blake3) is not None and not tx.xet.missing_xorbs(file.hash)

    @staticmethod
    def _known(file: ShardFile, known: XetFileRecord, max_bytes: int) -> XetFileRecord:
        if max_bytes and known.size > max_bytes:
            raise _too_large(file, max_bytes)
        if file.sha256 != known.sha256:
            raise Sha256MismatchError(
                f"File {file.file_hash} has SHA-256 {known.sha256}, not {file.sha256} as the "
                "shard claims",
                detail={"expected": file.sha256, "received": known.sha256},
            )
        return known

    def _rebuild_hashes(self, recipe: Recipe) -> tuple[Digest, str]:
        """BLAKE3 and SHA-256 of the file a recipe rebuilds. SHA-256, the slower, runs on a
        second thread while this one decodes the next piece and hashes it with BLAKE3 (both
        hashes and LZ4 release the GIL)."""
        b3, sha = blake3.blake3(max_threads=1), hashlib.sha256()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xet-sha256") as pool:
            pending: Future[None] | None = None
            for piece in read_recipe(self._blobs, recipe):
                if pending is not None:
                    pending.result()
                pending = pool.submit(sha.update, piece)
                b3.update(piece)
            if pending is not None:
                pending.result()
        return Digest(b3.hexdigest()), sha.hexdigest()

    # -- global dedup ---------------------------------------------------------------------

    def dedup(self, grant: grants.CasGrant, chunk: XetHash) -> bytes | None:
        """A shard listing the stored xorb that holds the chunk, then the other xorbs of the
        files that name it (each file's from that xorb on, in the order of its terms; at most
        DEDUP_CHUNKS chunks in all), its chunk hashes keyed with a fresh HMAC key, so they
        tell nothing to a client without the chunks; or None.

        Whole files, as xet-core's own server answers with the whole shard that registered
        the chunk: a client asks only about a file's first chunk and about chunks whose hash
        is eligible (1 in 1024; hf_xet 1.8.0 also waits 256 chunks after each query), so an
        answer naming one xorb left a client with an empty cache re-sending every other xorb
        (up to 64 MiB each) of a big file it had changed 1 KiB of.

        A chunk stored nowhere here, asked with an upload token, is answered once per token
        with the latest Xet files of the token's repo: the file being uploaded is most often
        a new version of one of them. A new safetensors header changes the first chunk, and
        the first eligible chunk after it lies ~64 MiB into the file on average: without
        this, a client with an empty cache re-sent all of that.

        Only xorbs of files in repos the token's user may read are named: an answer tells
        which content is stored, and gc keeps every xorb such a file names.
        """
        with self._db.read() as tx:
            xorb = tx.xet.xorb_of_chunk(chunk)
            readable = (
                f
                for f in (tx.xet.files_naming(xorb) if xorb is not None else ())
                if tx.blobs.in_visible_repo(f.blake3, grant.principal)
            )
            files = list(itertools.islice(readable, DEDUP_FILES))
            if not files:  # only files the user may read tell what is stored
                xorb, files = None, self._repo_hint(tx, grant)
            order = _dedup_order(xorb, files)
            records = tx.xet.xorbs(order)
        listed = self._dedup_listed(order, records)
        if not listed or (xorb is not None and listed[0].hash != xorb):
            return None
        with self._db.write(invalidates=False) as tx:  # gc keeps them while clients may dedup
            tx.blobs.want([r.blake3 for r in listed])
        now = int(time.time())
        expiry = now + int(self._settings.dedup_seconds)
        xorbs = [(r.hash, [(c.hash, c.length) for c in r.chunks]) for r in listed]
        return dedup_shard(xorbs, secrets.token_bytes(32), now, expiry)

    def _repo_hint(self, tx: Tx, grant: grants.CasGrant) -> list[XetFileRecord]:
        """The latest Xet files of an upload token's repo, the first time that token asks
        (later misses of the same upload would list them again for nothing)."""
        if not grant.write:
            return []
        key = (grant.repo, grant.user, grant.expires, grant.nonce)
        with self._hinted_lock:
            if key in self._hinted:
                return []
            self._hinted[key] = None
            while len(self._hinted) > HINTED_TOKENS:
                self._hinted.popitem(last=False)
        try:
            repo = find_repo(tx, grant.principal, grant.repo)
        except RegistryError:  # deleted, or no longer readable
            return []
        return tx.xet.latest_files(repo.id, DEDUP_FILES)

    def _dedup_listed(
        self, order: list[XetHash], records: dict[XetHash, XorbRecord]
    ) -> list[XorbRecord]:
        """The xorbs of `order` stored and servable here, in order, up to DEDUP_CHUNKS chunks
        (the first always)."""
        listed: list[XorbRecord] = []
        chunks = 0
        for h in order:
            record = records.get(h)
            if record is None or self._uploads.servable(record.blake3) is None:
                continue
            if listed and chunks + len(record.chunks) > DEDUP_CHUNKS:
                break
            listed.append(record)
            chunks += len(record.chunks)
        return listed

    # -- downloads ------------------------------------------------------------------------

    def reconstruction(
        self, grant: grants.CasGrant, file: XetHash, first: int, last: int | None
    ) -> Plan:
        """Which xorb bytes rebuild the range [first, last] of a file of the token's repo.

        Raises:
            NotFoundError: no such file in the token's repo (or not every xorb held here).
            RangeNotSatisfiableError: `first` is past the end of the file.
        """
        missing = NotFoundError(f"No Xet file {file} in {grant.repo}")
        with self._db.read() as tx:
            repo = find_repo(tx, grant.principal, grant.repo)
            record = tx.xet.file(file)
            if record is None or not tx.xet.file_in_repo(file, repo.id):
                raise missing
            xorbs = tx.xet.xorbs(record.xorbs)
        if len(xorbs) != len(record.xorbs):
            raise missing
        chunks_of = {h: x.chunks for h, x in xorbs.items()}
        return plan(record.terms, chunks_of, record.size, first, last)

    def fetch_query(self, xorb: XetHash) -> str:
        """The query string that lets a fetch URL of the xorb's bytes in, for a token's life."""
        expires = int(time.time() + self._settings.token_seconds)
        signature = grants.fetch_signature(self._node.secret, xorb.hex, expires)
        return f"expires={expires}&sig={signature}"

    def xorb_bytes(self, xorb: XetHash, expires: str, signature: str) -> XorbBytes:
        """The stored bytes a signed fetch URL names.

        Raises:
            UnauthorizedError: the signature is wrong or expired (the client asks for a new
                reconstruction and retries).
            NotFoundError: the xorb is not stored here.
        """
        # An expiry is a Unix time in ASCII digits: int() refuses other digits ("²") and more
        # than 4300 of them with a ValueError (a 500), so those are refused first.
        plausible = expires.isascii() and len(expires) <= 20
        secret, now = self._node.secret, time.time()
        if not plausible or not grants.fetch_allowed(secret, xorb.hex, expires, signature, now):
            raise UnauthorizedError("This xorb URL is invalid or expired")
        record = self._stored_xorb(xorb)
        if record is None:
            raise NotFoundError(f"Xorb {xorb} is not stored here")
        return XorbBytes(record.blake3, record.size)

    def xet_hashes(self, digests: set[Digest]) -> dict[Digest, XetHash]:
        """The Xet hash of each of these blobs this node can serve through Xet (every xorb
        held here); none while Xet is turned off."""
        if not self._settings.enabled or not digests:
            return {}
        with self._db.read() as tx:
            return tx.xet.servable_hashes(digests)

    def xet_hash(self, digest: Digest) -> XetHash | None:
        """As `xet_hashes`, for one blob, remembered until the next write."""
        generation = self._cache.generation
        found = self.xet_hashes({digest}).get(digest)
        if generation == self._cache.generation:
            self._cache.xet_hashes.put(digest, (found,))
        return found

    def cached_hash(self, digest: Digest) -> tuple[XetHash | None] | None:
        """What `xet_hash` remembers of a blob: (hash or None,), or None if nothing yet."""
        if not self._settings.enabled:
            return (None,)
        return self._cache.xet_hashes.get(digest)

    # -- replicas -------------------------------------------------------------------------

    def adopt(self, blob: Digest) -> None:
        """A blob just fetched from a peer or mirror: if a replicated recipe names it as a
        xorb, verify its chunks and hold it as that xorb; a file whose xorbs are then all
        held becomes a blob here (readable, servable through Xet)."""
        with self._db.read() as tx:
            wanted = tx.xet.wanted_xorbs(blob)
        for xorb in wanted:
            data = b"".join(self._blobs.open(blob))
            try:
                chunks = parse_xorb(data, xorb)
            except RegistryError as exc:  # the home named the wrong bytes: not this xorb
                logger.error("fetched xorb refused xorb=%s blob=%s error=%s", xorb, blob, exc)
                continue
            record = XorbRecord(xorb, blob, len(data), tuple(chunks))
            with self._db.write() as tx:
                tx.xet.add_xorb(record)
                tx.xet.index_chunks((c.hash, xorb) for c in chunks if is_dedup_eligible(c.hash))
                for file in tx.xet.files_naming(xorb):
                    if not tx.xet.missing_xorbs(file.hash):
                        tx.blobs.record(file.blake3, file.sha256, file.size, None)


def _dedup_order(xorb: XetHash | None, files: Iterable[XetFileRecord]) -> list[XetHash]:
    """The xorb, then each file's other xorbs: those its terms name after it, then those
    before (a client reads on from the chunk it asked about), each once. No xorb: each file's
    xorbs in the order of its terms."""
    order: dict[XetHash, None] = {} if xorb is None else {xorb: None}
    for file in files:
        named = list(dict.fromkeys(t.xorb for t in file.terms))
        at = named.index(xorb) if xorb in named else 0
        order.update(dict.fromkeys(named[at:] + named[:at]))
    return list(order)


def _too_large(file: ShardFile, max_bytes: int) -> TooLargeError:
    """Refused before its chunks are listed or read: a few terms can name terabytes."""
    return TooLargeError(
        f"File {file.file_hash} is larger than the {max_bytes} bytes this node accepts in one "
        "file (limit max_blob_bytes: MODELYARD_LIMITS__MAX_BLOB_BYTES)",
        detail={"limit": "max_blob_bytes", "file": file.file_hash.hex, "max": max_bytes},
    )


def _require_upload(grant: grants.CasGrant) -> None:
    if grant.pull_request:
        require_contributor(grant.principal)
    else:
        require_write(grant.principal, grant.repo.namespace)


def _term_chunks(
    xorbs: dict[XetHash, XorbRecord], index: int, xorb: XetHash, start: int, end: int, length: int
) -> list[ChunkEntry]:
    """The stored chunks a shard's term names, checked against its declared length."""
    record = xorbs.get(xorb)
    if record is None:
        raise XorbMissingError(
            f"Term {index} names xorb {xorb}, which is not stored here: upload it first",
            detail={"xorb": xorb.hex, "term": index},
        )
    if not 0 <= start < end <= len(record.chunks):
        raise XetInvalidError(
            f"Term {index} names chunks [{start}, {end}) of xorb {xorb}, which has "
            f"{len(record.chunks)}",
            detail={"xorb": xorb.hex, "term": index},
        )
    run = list(record.chunks[start:end])
    if sum(c.length for c in run) != length:
        raise XetInvalidError(
            f"Term {index} declares {length} bytes; its chunks hold {sum(c.length for c in run)}",
            detail={"xorb": xorb.hex, "term": index},
        )
    return run
