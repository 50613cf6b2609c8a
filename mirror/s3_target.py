"""An S3 mirror bucket (boto3, any S3-compatible store): written by pushes, read by clients.

Credentials and the endpoint come from boto3's usual chain (environment, shared config,
instance roles; `AWS_ENDPOINT_URL` for S3-compatible stores). botocore errors are translated
here: a missing key is a NotFound, anything else an UpstreamError naming the bucket.

A file the node holds as Xet xorbs is written as its xorbs (blobs the bucket lacks), their
chunk indexes and its recipe, and read back from them (`mirror.recipes`) when the bucket has
no blob of it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig

from mirror.layout import BucketPath, layout_document
from mirror.recipes import (
    BucketRecipe,
    ChunkIndexes,
    file_document,
    parse_file_document,
    parse_xorb_document,
    read_file,
    xorb_document,
)
from mirror.targets import PushCommit, PushFile, RemoteHead, XetParts, intact
from registry.domain.digest import Digest
from registry.domain.errors import (
    BlobNotFoundError,
    BlobUnavailableError,
    MirrorUnavailableError,
    RevisionNotFoundError,
)
from registry.domain.manifest import Manifest, ManifestFile, parse_manifest, parse_ref, ref_json
from registry.domain.names import COMMIT_SHA, recovered_branches
from registry.domain.records import XorbRecord
from registry.domain.xet.types import ChunkEntry, XorbRef
from registry.storage.s3client import s3_client, s3_errors

logger = logging.getLogger(__name__)
CHUNK = 1024 * 1024
# Large blobs go up in 64 MiB parts, a few at a time (boto3's managed transfer).
_TRANSFER = TransferConfig(
    multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024
)


class S3Bucket:
    def __init__(self, url: str, client: Any | None = None) -> None:
        self.path = BucketPath.parse(url)
        self._s3 = client if client is not None else s3_client()
        self._layout_written = False
        # Recipes and chunk indexes never change once written: a reader keeps the last few
        # (a file is read in many ranges, each needing its recipe and one or two indexes).
        self._recipe = functools.lru_cache(maxsize=32)(self._load_recipe)
        self._chunks = functools.lru_cache(maxsize=16)(self._load_chunks)

    @property
    def name(self) -> str:
        return self.path.url

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return s3_errors(self.name, what, MirrorUnavailableError)

    # Writing (pushes, the node's outbox): the Target protocol.

    def push_commit(self, commit: PushCommit) -> None:
        """Blobs first (those already in the bucket are skipped; a Xet file goes as its xorbs
        and recipe), then the manifest."""
        self.ensure_layout()
        for file in commit.files:
            if self.has_blob(file.blake3):
                continue
            if file.xet is not None and file.size:
                self.put_xet_file(file, file.xet)
                continue
            file.require_intact()
            with file.source.open("rb") as fileobj:
                self.put_blob(file.blake3, fileobj)
        self.put_manifest(commit.manifest())

    def put_xet_file(self, file: PushFile, xet: XetParts) -> None:
        """A file as its xorbs (those the bucket lacks), each xorb's chunk index, then its
        recipe: the order in which a reader needs them. Skipped when the recipe is there."""
        key = self.path.xet_file_key(file.blake3)
        if self._exists(key):
            return
        if xet.recipe.size != file.size:
            raise BlobUnavailableError(f"{file.path}: its Xet recipe is of another size")
        document = file_document(file.blake3, file.sha256, xet.recipe)
        for term in xet.recipe.terms:
            self._put_xorb(xet.recipe.xorbs[term.xorb], xet)
        self._put_json(key, document)

    def _put_xorb(self, xorb: XorbRecord, xet: XetParts) -> None:
        index = self.path.xet_xorb_key(xorb.blake3.hex)
        if self._exists(index):  # written after its xorb: both are there
            return
        if not self.has_blob(xorb.blake3.hex):
            with xet.local_xorb(xorb.blake3) as local:
                if local is None or not intact(local, xorb.blake3.hex, xorb.size):
                    raise BlobUnavailableError(
                        f"xorb {xorb.hash} ({xorb.blake3}) is missing or damaged on this node; "
                        "not pushed until it is repaired (modelyard verify)"
                    )
                with local.open("rb") as fileobj:
                    self.put_blob(xorb.blake3.hex, fileobj)
        self._put_json(index, xorb_document(xorb))

    def set_ref(self, commit: PushCommit, ref: str) -> None:
        self.put_ref(commit.repo_type, commit.repo, ref, commit.commit, int(time.time() * 1000))

    def head(self, repo_type: str, repo: str, ref: str) -> RemoteHead | None:
        key = self.path.ref_key(repo_type, repo, ref)
        try:
            commit = parse_ref(self._get_json(key, ref))
        except RevisionNotFoundError:
            return None
        return RemoteHead(commit, commit)

    def keep(self, repo_type: str, repo: str, ref: str, head: RemoteHead) -> str:
        for name in recovered_branches(ref):
            there = self.head(repo_type, repo, f"refs/heads/{name}")
            if there is None:
                self.put_ref(
                    repo_type, repo, f"refs/heads/{name}", head.remote, int(time.time() * 1000)
                )
            if there is None or there.remote == head.remote:
                return name
        raise AssertionError("recovered_branches ends by raising")

    def ensure_layout(self) -> None:
        """Write `modelyard.json` at the prefix, once, so the bucket describes itself; a bucket
        written before Xet files were gets the document naming their keys."""
        if self._layout_written:
            return
        key = self.path.layout_key()
        try:
            current = self._get_json(key, "no layout document")
        except RevisionNotFoundError:
            current = None
        if not isinstance(current, dict) or "xet" not in current:
            self._put_json(key, layout_document())
        self._layout_written = True

    def has_blob(self, blake3_hex: str) -> bool:
        return self._exists(self.path.blob_key(blake3_hex))

    def put_blob(self, blake3_hex: str, fileobj: BinaryIO) -> None:
        key = self.path.blob_key(blake3_hex)
        with self._errors(f"upload of blob {blake3_hex}"):
            self._s3.upload_fileobj(fileobj, self.path.bucket, key, Config=_TRANSFER)

    def put_manifest(self, manifest: Manifest) -> None:
        key = self.path.manifest_key(manifest.repo_type, manifest.repo, manifest.commit)
        self._put_json(key, manifest.to_json())

    def put_ref(self, repo_type: str, repo: str, ref: str, commit: str, updated_ms: int) -> None:
        self._put_json(self.path.ref_key(repo_type, repo, ref), ref_json(ref, commit, updated_ms))

    def delete_ref(self, repo_type: str, repo: str, ref: str) -> None:
        with self._errors(f"deleting {ref}"):
            self._s3.delete_object(
                Bucket=self.path.bucket, Key=self.path.ref_key(repo_type, repo, ref)
            )

    def _exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self._s3.head_object(Bucket=self.path.bucket, Key=key)
        except BlobNotFoundError:
            return False
        return True

    def _put_json(self, key: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, sort_keys=True).encode()
        with self._errors(f"writing {key}"):
            self._s3.put_object(
                Bucket=self.path.bucket, Key=key, Body=body, ContentType="application/json"
            )

    # Reading (the client library, pull-through).

    def probe(self) -> None:
        with self._errors("the bucket"):
            self._s3.head_bucket(Bucket=self.path.bucket)

    def _get_json(self, key: str, missing: str) -> object:
        try:
            with self._errors(key):
                body = self._s3.get_object(Bucket=self.path.bucket, Key=key)["Body"].read()
        except BlobNotFoundError:
            raise RevisionNotFoundError(missing) from None
        try:
            return json.loads(body)
        except ValueError:
            raise MirrorUnavailableError(f"{self.name}: {key} is not JSON") from None

    def refs(self, repo_type: str, repo: str) -> dict[str, str]:
        """Every branch and tag of `repo` the bucket holds, with the commit each points at."""
        prefix = self.path.refs_prefix(repo_type, repo)
        found: dict[str, str] = {}
        with self._errors(f"listing the refs of {repo}"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.path.bucket, Prefix=prefix
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        for key in keys:
            ref = "refs/" + key.removeprefix(prefix).removesuffix(".json")
            found[ref] = parse_ref(self._get_json(key, ref))
        return found

    def manifest(self, repo_type: str, repo: str, commit: str) -> Manifest:
        """The manifest of one commit of `repo`, checked to describe it."""
        key = self.path.manifest_key(repo_type, repo, commit)
        manifest = parse_manifest(self._get_json(key, f"{repo}@{commit} has no manifest"))
        if manifest.repo != repo or manifest.commit != commit:
            raise MirrorUnavailableError(f"{self.name}: {key} describes another commit")
        return manifest

    def resolve(self, repo_type: str, repo: str, revision: str) -> Manifest:
        """The manifest of `repo` at a branch, tag or commit id, read from the bucket."""
        commit = revision if COMMIT_SHA.match(revision) else None
        for ref in [] if commit else [f"refs/heads/{revision}", f"refs/tags/{revision}"]:
            try:
                commit = parse_ref(self._get_json(self.path.ref_key(repo_type, repo, ref), ref))
                break
            except RevisionNotFoundError:
                continue
        if commit is None:
            raise RevisionNotFoundError(f"{repo}@{revision} is not in {self.name}")
        key = self.path.manifest_key(repo_type, repo, commit)
        manifest = parse_manifest(self._get_json(key, f"{repo}@{commit} has no manifest"))
        if manifest.repo != repo or manifest.commit != commit:
            raise MirrorUnavailableError(f"{self.name}: {key} describes another commit")
        return manifest

    def open(self, file: ManifestFile, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The file's bytes [start, end) (the caller verifies them against the manifest): its
        blob, else rebuilt from its Xet recipe and xorbs, every chunk checked on the way."""
        if file.blake3 is None:
            raise BlobNotFoundError(f"{self.name} keeps blobs by BLAKE3; {file.path} has none")
        last = "" if end is None else str(end - 1)
        extra = {"Range": f"bytes={start}-{last}"} if start or end is not None else {}
        try:
            with self._errors(f"blob of {file.path}"):
                key = self.path.blob_key(file.blake3)
                body = self._s3.get_object(Bucket=self.path.bucket, Key=key, **extra)["Body"]
        except BlobNotFoundError:
            body = None  # a file uploaded through Xet: its recipe, if the bucket has one
        if body is None:
            recipe = self._recipe(file.blake3, file.size)
            yield from read_file(recipe, ChunkIndexes(recipe, self._chunks), self._read, start, end)
            return
        try:
            with self._errors(f"reading the blob of {file.path}"):
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def _load_recipe(self, blake3_hex: str, size: int) -> BucketRecipe:
        key = self.path.xet_file_key(blake3_hex)
        missing = f"{self.name} has neither the blob nor a Xet recipe of blake3:{blake3_hex}"
        try:
            document = self._get_json(key, missing)
        except RevisionNotFoundError:
            raise BlobNotFoundError(missing) from None
        return parse_file_document(document, blake3_hex, size)

    def _load_chunks(self, xorb: XorbRef) -> tuple[ChunkEntry, ...]:
        key = self.path.xet_xorb_key(xorb.blake3.hex)
        missing = f"{self.name} has no chunk index of xorb {xorb.hash}"
        try:
            document = self._get_json(key, missing)
        except RevisionNotFoundError:
            raise BlobNotFoundError(missing) from None
        return parse_xorb_document(document, xorb)

    def _read(self, blob: Digest, start: int, end: int) -> bytes:
        """Bytes [start, end) of a blob (a xorb), read whole: at most one segment."""
        with self._errors(f"xorb {blob.hex}"):
            body = self._s3.get_object(
                Bucket=self.path.bucket,
                Key=self.path.blob_key(blob.hex),
                Range=f"bytes={start}-{end - 1}",
            )["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
