"""Xet uploads made by hand, as a client makes them: a file cut into fixed-size chunks (a node
checks hashes, never where a client cut), packed into xorbs with the domain's serializers, and
the shard that registers it; and the CAS calls that send them to a node."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import blake3
import httpx

from registry.domain.digest import Digest
from registry.domain.xet.hashes import file_hash, verification_hash
from registry.domain.xet.shard import ShardFile, ShardXorb, build_shard
from registry.domain.xet.types import Term, XetHash
from registry.domain.xet.xorb import SCHEME_NONE, serialize_xorb
from tests.conftest import RunningNode
from tests.hub import NDJSON, header, ndjson

KiB = 1024


@dataclass(frozen=True)
class XetUpload:
    """A file cut into chunks and packed into xorbs as a client does, with what its shard
    says about it."""

    data: bytes
    xorbs: tuple[tuple[XetHash, bytes], ...]  # (name, serialized bytes), in file order
    file: ShardFile
    listed: tuple[ShardXorb, ...]  # the shard's xorb section

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def blake3(self) -> Digest:
        return Digest(blake3.blake3(self.data, max_threads=blake3.blake3.AUTO).hexdigest())

    def shard(self, file: ShardFile | None = None) -> bytes:
        """The upload shard, with this file or the `file` given in its place."""
        return build_shard([file or self.file], self.listed)


def xet_upload(
    data: bytes, *, chunk: int = 64 * KiB, per_xorb: int = 4, scheme: int = SCHEME_NONE
) -> XetUpload:
    """`data` in chunks of `chunk` bytes, `per_xorb` chunks to a xorb, every chunk compressed
    with `scheme`; the file's terms, verification hashes, hash and sha256 all correct."""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    xorbs: list[tuple[XetHash, bytes]] = []
    terms: list[Term] = []
    verifications: list[XetHash] = []
    listed: list[ShardXorb] = []
    leaves: list[tuple[XetHash, int]] = []
    for start in range(0, len(pieces), per_xorb):
        body, name, entries = serialize_xorb(pieces[start : start + per_xorb], scheme)
        offsets = itertools.accumulate((e.length for e in entries), initial=0)
        xorbs.append((name, body))
        terms.append(Term(name, 0, len(entries), sum(e.length for e in entries)))
        verifications.append(verification_hash([e.hash for e in entries]))
        records = tuple((e.hash, o, e.length, 0) for e, o in zip(entries, offsets, strict=False))
        listed.append(ShardXorb(name, records))
        leaves.extend((e.hash, e.length) for e in entries)
    file = ShardFile(
        file_hash(leaves), tuple(terms), tuple(verifications), hashlib.sha256(data).hexdigest()
    )
    return XetUpload(data, tuple(xorbs), file, tuple(listed))


def some_hash(seed: object) -> XetHash:
    return XetHash(hashlib.sha256(repr(seed).encode()).digest())


# -- talking to the CAS ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cas:
    node: RunningNode
    token: str  # a CAS write token of the admin, for the repo under test

    def client(self, token: str | None = None) -> httpx.Client:
        """A client with the write token, or with `token` ("": none at all)."""
        return self.node.client(self.token if token is None else token)


def cas_token(http: httpx.Client, repo: str, kind: str = "write") -> str:
    answer = http.get(f"/api/models/{repo}/xet-{kind}-token/main")
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["accessToken"]
    return token


def post_xorb(
    http: httpx.Client, name: XetHash | str, body: bytes | Iterable[bytes]
) -> httpx.Response:
    return http.post(f"/cas/v1/xorbs/default/{name}", content=body)


def post_shard(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/cas/v1/shards", content=body)


def send_xorbs(http: httpx.Client, upload: XetUpload) -> None:
    for name, body in upload.xorbs:
        answer = post_xorb(http, name, body)
        assert answer.status_code == 200, answer.text


def send(http: httpx.Client, upload: XetUpload) -> None:
    """Every xorb, then the shard."""
    send_xorbs(http, upload)
    answer = post_shard(http, upload.shard())
    assert answer.status_code == 200 and answer.json() == {"result": 1}, answer.text


def commit(http: httpx.Client, repo: str, path: str, upload: XetUpload) -> httpx.Response:
    """A Hub commit naming the file by sha256, as the stock client's commit after Xet does."""
    lfs = {"path": path, "algo": "sha256", "oid": upload.sha256, "size": len(upload.data)}
    return http.post(
        f"/api/models/{repo}/commit/main",
        headers=NDJSON,
        content=ndjson(header("xet"), {"key": "lfsFile", "value": lfs}),
    )
