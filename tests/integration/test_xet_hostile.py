"""Hostile input to the node's Xet CAS over real HTTP (xet-protocol.md §2, §3): each bad request
gets a 4xx with its machine-readable code and leaves nothing stored (no xorb, Xet file or blob
row, no new bytes in the blob store); the upload path is idempotent, also when several threads
send the same xorb at once.

Xorbs and shards are made by hand (tests/xet_uploads.py), then damaged; the stock client's own
uploads are tests/integration/test_xet.py's business.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from http.client import HTTPConnection
from urllib.parse import parse_qs, urlsplit

import blake3
import httpx
import lz4.frame  # type: ignore[import-untyped]  # lz4 ships no type stubs
import pytest
from sqlalchemy import text

from registry.domain.digest import Digest
from registry.domain.names import RepoId, RepoType
from registry.domain.tokens import sign
from registry.domain.xet import grant as grants
from registry.domain.xet.hashes import chunk_hash
from registry.domain.xet.shard import (
    FLAG_METADATA_EXT,
    FLAG_VERIFICATION,
    SHARD_TAG,
    ShardFile,
)
from registry.domain.xet.types import Term, XetHash
from registry.domain.xet.xorb import (
    MAX_CHUNK_BYTES,
    MAX_XORB_BYTES,
    SCHEME_BG4_LZ4,
    SCHEME_LZ4,
    serialize_chunk,
)
from tests.blobs import upload_leftovers
from tests.conftest import RunningNode
from tests.requestcounts import answered_by_status
from tests.xet_uploads import (
    Cas,
    XetUpload,
    cas_token,
    commit,
    post_shard,
    post_xorb,
    send,
    send_xorbs,
    some_hash,
    xet_upload,
)

REPO = "admin/hostile"
KiB = 1024
MiB = 1024 * KiB
# Tables an upload writes to (or a commit, which a refused upload must not make either).
COUNTED = ("blob", "xorb", "xet_file", "xet_file_xorb", "xet_chunk", "commit", "change")
BOOKEND = b"\xff" * 32 + bytes(16)


# -- what must not change -------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    digests: frozenset[Digest]  # the blob store's
    rows: tuple[tuple[str, int], ...]  # rows of each COUNTED table
    leftovers: frozenset[str]  # files of uploads in progress


def stored(node: RunningNode) -> Stored:
    with node.runtime.db.engine.connect() as connection:
        rows = tuple(
            (table, int(connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()))
            for table in COUNTED
        )
    return Stored(
        frozenset(node.runtime.blobs.iter_digests()),
        rows,
        frozenset(upload_leftovers(node.settings)),
    )


def answered(node: RunningNode, method: str, route: str) -> float:
    """How many requests to `route` the node has answered, whatever their status."""
    return answered_by_status(node.url, route=route, method=method).total()


def assert_not_stored(node: RunningNode, upload: XetUpload, *, xorbs: bool = True) -> None:
    """No row for the file (and, with `xorbs`, none for its xorbs) and none of their bytes."""
    digests = set(node.runtime.blobs.iter_digests())
    with node.runtime.db.read() as tx:
        assert tx.xet.file(upload.file.file_hash) is None
        assert tx.blobs.get(upload.blake3) is None
        assert upload.blake3 not in digests
        for name, body in upload.xorbs if xorbs else ():
            assert tx.xet.xorb(name) is None
            assert tx.blobs.get(Digest(blake3.blake3(body).hexdigest())) is None
            assert Digest(blake3.blake3(body).hexdigest()) not in digests


def assert_refused(response: httpx.Response, status: int, code: str, case: str = "") -> None:
    """A 4xx with its code in the body and the header; `case` names the case in a failure."""
    assert response.status_code == status, (case, response.status_code, response.text)
    assert response.headers["X-Error-Code"] == code, (case, response.headers.get("X-Error-Code"))
    body = response.json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["detail"], dict), body


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def cas(node: RunningNode) -> Cas:
    with node.client(node.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "hostile"}).status_code == 200
        return Cas(node, cas_token(http, REPO))


@pytest.fixture
def committed(cas: Cas) -> XetUpload:
    """A file of 5 chunks in 2 xorbs (LZ4, then BG4), uploaded and committed to main as w.bin."""
    rng = random.Random(7)
    data = rng.randbytes(150_000) + bytes(100_000) + rng.randbytes(50_000)
    upload = xet_upload(data, per_xorb=3, scheme=SCHEME_LZ4)
    second = upload.xorbs[1][0]
    bg4 = xet_upload(data[3 * 64 * KiB :], scheme=SCHEME_BG4_LZ4)  # the same chunks, BG4
    upload = replace(upload, xorbs=(upload.xorbs[0], *bg4.xorbs))
    assert upload.xorbs[1][0] == second  # a xorb's name does not depend on its compression
    with cas.client() as http:
        send(http, upload)
    with cas.node.client(cas.node.admin_token) as http:
        answer = commit(http, REPO, "w.bin", upload)
        assert answer.status_code == 200, answer.text
        assert http.get(f"/{REPO}/resolve/main/w.bin").content == data
    return upload


# -- xorbs ----------------------------------------------------------------------------------


def test_xorb_under_another_hash_is_refused_with_xorb_hash_mismatch(cas: Cas) -> None:
    upload = xet_upload(os.urandom(200_000), per_xorb=2)
    (_, body), (other, _) = upload.xorbs[:2]
    before = stored(cas.node)
    with cas.client() as http:
        answer = post_xorb(http, other, body)
    assert_refused(answer, 400, "XorbHashMismatch")
    assert answer.json()["detail"]["expected"] == other.hex
    assert stored(cas.node) == before
    assert_not_stored(cas.node, upload)


def _chunk_end(body: bytes) -> int:
    """Where the first chunk of a serialized xorb ends (8-byte header, then its payload)."""
    return 8 + int.from_bytes(body[1:4], "little")


def _with_byte(body: bytes, offset: int, value: int) -> bytes:
    return body[:offset] + bytes([value]) + body[offset + 1 :]


def _declared_length(body: bytes, length: int) -> bytes:
    """The first chunk's header claiming `length` uncompressed bytes."""
    return body[:5] + length.to_bytes(3, "little") + body[8:]


DAMAGED: dict[str, Callable[[bytes], bytes]] = {
    "payload cut short": lambda body: body[:-1000],
    "header cut short": lambda body: body[: _chunk_end(body) + 5],
    "bytes after the last chunk": lambda body: body + b"\x00\x00\x00",
    "unknown scheme 3": lambda body: _with_byte(body, 4, 3),
    "unknown scheme 99 (client-side auto)": lambda body: _with_byte(body, 4, 99),
    "raw payload called LZ4": lambda body: _with_byte(body, 4, SCHEME_LZ4),
    "header version 1": lambda body: _with_byte(body, 0, 1),
    "declared longer than its raw payload": lambda body: _declared_length(body, 64 * KiB + 1),
    "declared over 128 KiB": lambda body: _declared_length(body, MAX_CHUNK_BYTES + 1),
    "declared empty": lambda body: _declared_length(body, 0),
    "empty body": lambda _body: b"",
}


def test_malformed_xorb_is_refused_with_xet_invalid(cas: Cas) -> None:
    upload = xet_upload(os.urandom(200_000), per_xorb=4)
    ((name, body),) = upload.xorbs
    before = stored(cas.node)
    with cas.client() as http:
        for case, damage in DAMAGED.items():
            assert_refused(post_xorb(http, name, damage(body)), 400, "XetInvalid", case)
            assert stored(cas.node) == before, case
        assert_not_stored(cas.node, upload)
        assert post_xorb(http, name, body).json() == {"was_inserted": True}


def lz4_bomb(expanded: int) -> bytes:
    """One chunk declaring 128 KiB whose LZ4 frame decodes to `expanded` zero bytes."""
    compressor = lz4.frame.LZ4FrameCompressor()
    zeros = bytes(16 * MiB)
    frame = b"".join(
        [
            compressor.begin(),
            *(compressor.compress(zeros) for _ in range(expanded // len(zeros))),
            compressor.flush(),
        ]
    )
    return struct.pack("<II", len(frame) << 8, SCHEME_LZ4 | MAX_CHUNK_BYTES << 8) + frame


def test_lz4_bomb_is_refused_at_its_declared_length(cas: Cas) -> None:
    """1 GiB of zeros in a 4 MiB frame, under the name of its first 128 KiB: decoding stops at
    the ceiling, and a frame with more to give is refused."""
    bomb = lz4_bomb(1024 * MiB)
    assert len(bomb) < 8 * MiB
    name = chunk_hash(bytes(MAX_CHUNK_BYTES))
    before = stored(cas.node)
    started = time.monotonic()
    with cas.client() as http:
        answer = post_xorb(http, name, bomb)
    assert_refused(answer, 400, "XetInvalid")
    assert answer.json()["detail"]["declared"] == MAX_CHUNK_BYTES
    assert time.monotonic() - started < 10
    assert stored(cas.node) == before
    with cas.node.runtime.db.read() as tx:
        assert tx.xet.xorb(name) is None


def test_xorb_over_64_mib_is_refused_from_its_content_length_before_any_body(cas: Cas) -> None:
    before = stored(cas.node)
    connection = HTTPConnection("127.0.0.1", cas.node.port, timeout=30)
    try:
        connection.putrequest("POST", f"/cas/v1/xorbs/default/{some_hash('big')}")
        connection.putheader("Authorization", f"Bearer {cas.token}")
        connection.putheader("Content-Length", str(MAX_XORB_BYTES + 1))
        connection.endheaders()  # and not one byte of the body
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("X-Error-Code") == "PayloadTooLarge"
        assert b'"code":"PayloadTooLarge"' in response.read()
    finally:
        connection.close()
    assert stored(cas.node) == before


def test_xorb_over_64_mib_is_refused_when_sent_without_content_length(cas: Cas) -> None:
    def body() -> Iterator[bytes]:
        # Well-formed chunks, so that only the size is wrong: the last one ends past the limit.
        chunk = serialize_chunk(os.urandom(MAX_CHUNK_BYTES))
        for _ in range(MAX_XORB_BYTES // len(chunk) + 1):
            yield chunk

    before = stored(cas.node)
    with cas.client() as http:
        answer = post_xorb(http, some_hash("chunked"), body())
    assert "content-length" not in answer.request.headers
    assert_refused(answer, 413, "PayloadTooLarge")
    assert stored(cas.node) == before


def test_xorb_body_cut_off_by_a_hang_up_stores_nothing(cas: Cas) -> None:
    upload = xet_upload(os.urandom(300_000), per_xorb=8)
    ((name, body),) = upload.xorbs
    before = stored(cas.node)
    connection = HTTPConnection("127.0.0.1", cas.node.port, timeout=30)
    try:
        connection.putrequest("POST", f"/cas/v1/xorbs/default/{name}")
        connection.putheader("Authorization", f"Bearer {cas.token}")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[: len(body) // 2])
    finally:
        connection.close()  # the rest never comes
    # The node counts a request once its handler is done with it (metrics middleware).
    deadline = time.monotonic() + 10
    while answered(cas.node, "POST", "/cas/v1/xorbs/{prefix}/{xorb}") < 1:
        assert time.monotonic() < deadline, "the node never finished the cut-off request"
        time.sleep(0.02)
    assert stored(cas.node) == before
    assert_not_stored(cas.node, upload)
    with cas.client() as http:  # and the whole xorb is taken afterwards
        assert post_xorb(http, name, body).json() == {"was_inserted": True}


# -- shards ---------------------------------------------------------------------------------


def huge_count_shard(section: str) -> bytes:
    """A shard whose file (or xorb) block declares 2^32-1 records and holds three."""
    head = struct.pack("<32sQQ", SHARD_TAG, 2, 0)
    if section == "file":
        flags = FLAG_VERIFICATION | FLAG_METADATA_EXT
        block = struct.pack("<32sII8x", some_hash("file").raw, flags, 2**32 - 1)
        return head + block + bytes(3 * 48) + BOOKEND + BOOKEND
    block = struct.pack("<32sIIII", some_hash("xorb").raw, 0, 2**32 - 1, 0, 0)
    return head + BOOKEND + block + bytes(3 * 48) + BOOKEND


def test_shard_declaring_2_to_the_32_records_is_refused_at_once(cas: Cas) -> None:
    before = stored(cas.node)
    started = time.monotonic()
    with cas.client() as http:
        for section in ("file", "xorb"):
            answer = post_shard(http, huge_count_shard(section))
            assert_refused(answer, 400, "XetInvalid", section)
            assert answer.json()["detail"]["count"] >= 2**32 - 1
    assert time.monotonic() - started < 5
    assert stored(cas.node) == before


def test_shard_naming_a_xorb_never_uploaded_is_refused_with_xorb_missing(cas: Cas) -> None:
    upload = xet_upload(os.urandom(300_000), per_xorb=2)  # 3 xorbs; the last one never sent
    with cas.client() as http:
        for name, body in upload.xorbs[:-1]:
            assert post_xorb(http, name, body).status_code == 200
        before = stored(cas.node)
        answer = post_shard(http, upload.shard())
    assert_refused(answer, 400, "XorbMissing")
    assert answer.json()["detail"] == {"xorb": upload.xorbs[-1][0].hex, "term": 2}
    assert stored(cas.node) == before
    assert_not_stored(cas.node, upload, xorbs=False)


def _first_term(
    file: ShardFile, *, start: int | None = None, end: int | None = None, length: int = 0
) -> ShardFile:
    """The file with its first term's chunk range or length changed."""
    t = file.terms[0]
    term = Term(
        t.xorb,
        t.start if start is None else start,
        t.end if end is None else end,
        length or t.length,
    )
    return replace(file, terms=(term, *file.terms[1:]))


SHARD_DAMAGE: dict[str, tuple[Callable[[ShardFile], ShardFile], str]] = {
    "wrong verification hash": (
        lambda f: replace(f, verifications=(some_hash("v"), *(f.verifications or ())[1:])),
        "VerificationMismatch",
    ),
    "verification of another term": (
        lambda f: replace(f, verifications=tuple(reversed(f.verifications or ()))),
        "VerificationMismatch",
    ),
    "wrong sha256 claim": (
        lambda f: replace(f, sha256=hashlib.sha256(b"something else").hexdigest()),
        "Sha256Mismatch",
    ),
    "wrong file hash": (lambda f: replace(f, file_hash=some_hash("f")), "FileHashMismatch"),
    "terms in another order": (
        lambda f: replace(
            f, terms=f.terms[::-1], verifications=tuple(reversed(f.verifications or ()))
        ),
        "FileHashMismatch",
    ),
    "no verification records": (lambda f: replace(f, verifications=None), "XetInvalid"),
    "no sha256": (lambda f: replace(f, sha256=None), "XetInvalid"),
    "term longer than its chunks": (
        lambda f: _first_term(f, length=f.terms[0].length + 1),
        "XetInvalid",
    ),
    "term past the end of its xorb": (lambda f: _first_term(f, end=5), "XetInvalid"),
    "empty term": (lambda f: _first_term(f, start=1, end=1), "XetInvalid"),
}


def test_shard_that_does_not_hold_is_refused_and_registers_nothing(cas: Cas) -> None:
    upload = xet_upload(os.urandom(500_000), per_xorb=4)  # 8 chunks: 2 xorbs of 4
    with cas.client() as http:
        send_xorbs(http, upload)
        before = stored(cas.node)
        for case, (damage, code) in SHARD_DAMAGE.items():
            file = damage(upload.file)
            assert_refused(post_shard(http, upload.shard(file)), 400, code, case)
            assert stored(cas.node) == before, case
            with cas.node.runtime.db.read() as tx:
                assert tx.xet.file(file.file_hash) is None, case
        assert_not_stored(cas.node, upload, xorbs=False)
        # The commit that would follow finds no file by that sha256.
        with cas.node.client(cas.node.admin_token) as admin:
            assert_refused(commit(admin, REPO, "w.bin", upload), 400, "MissingObject")
        # The right shard is still taken afterwards.
        assert post_shard(http, upload.shard()).json() == {"result": 1}


def test_shard_file_over_the_file_size_limit_is_refused_before_it_is_read(
    start_node: Callable[..., RunningNode],
) -> None:
    """A shard names stored chunks, so a few bytes of it can describe a huge file: one of a
    node's files is at most `max_blob_bytes` however it comes, checked before a byte is read."""
    node = start_node("capped", limits={"max_blob_bytes": MiB})
    with node.client(node.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "hostile"}).status_code == 200
        cas = Cas(node, cas_token(http, REPO))
    small = xet_upload(os.urandom(MiB // 2), per_xorb=16)  # 8 chunks in one xorb
    large = xet_upload(os.urandom(MiB + 1), per_xorb=16)
    # 20,000 times the small file's one term: 10 GiB, described by a shard of 2 MB.
    ((term,), (verification,)) = small.file.terms, small.file.verifications or ()
    huge = replace(
        small.file,
        file_hash=some_hash("huge"),
        terms=(term,) * 20_000,
        verifications=(verification,) * 20_000,
    )
    with cas.client() as http:
        send(http, small)
        send_xorbs(http, large)
        before = stored(node)
        started = time.monotonic()
        for shard in (large.shard(), small.shard(huge)):
            answer = post_shard(http, shard)
            assert_refused(answer, 413, "PayloadTooLarge")
            assert answer.headers["X-Modelyard-Limit"] == "max_blob_bytes"
        assert time.monotonic() - started < 10
    assert stored(node) == before
    assert_not_stored(node, large, xorbs=False)
    with node.runtime.db.read() as tx:
        assert tx.xet.file(huge.file_hash) is None


# -- tokens ---------------------------------------------------------------------------------


def forged(node: RunningNode, *, expires: int, write: bool = True) -> str:
    """A token signed with the node's own secret (what only the node can make)."""
    repo = RepoId(RepoType.MODEL, "admin", "hostile")
    grant = grants.CasGrant(repo, "admin", True, write, expires)
    return grants.issue(node.runtime.identity.secret, grant)


def tampered(token: str) -> str:
    """A read token turned into a write token, under its old signature."""
    prefix, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields[5] = True  # write
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    return f"{prefix}.{payload}.{signature}"


def cas_requests(upload: XetUpload) -> list[tuple[str, str, bytes | None]]:
    """An upload's requests: a xorb, the shard, and a grant query."""
    name, body = upload.xorbs[0]
    return [
        ("POST", f"/cas/v1/xorbs/default/{name}", body),
        ("POST", "/cas/v1/shards", upload.shard()),
        ("POST", f"/cas/v1/xorb-grants/default/{name}", b"{}"),
    ]


def test_upload_without_a_valid_cas_token_is_unauthorized(
    cas: Cas, start_node: Callable[..., RunningNode]
) -> None:
    other = start_node("other")
    with other.client(other.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "hostile"}).status_code == 200
        other_token = cas_token(http, REPO)  # same repo, user and admin: another node's secret
    with cas.node.client(cas.node.admin_token) as http:
        read = cas_token(http, REPO, "read")
    now = int(time.time())
    prefix, payload, signature = cas.token.split(".")
    tokens = {
        "none": "",
        "garbage": "not-a-token",
        "garbage in the token's shape": "xet1.eyJ4Ijp9.00",
        "the admin's Hub token": cas.node.admin_token,
        "another node's": other_token,
        "expired": forged(cas.node, expires=now - grants.SKEW - 5),
        "read token made a write token": tampered(read),
        "signature altered": f"{prefix}.{payload}.{signature[::-1]}",
        "signature of another token": f"{prefix}.{payload}.{read.split('.')[2]}",
    }
    upload = xet_upload(os.urandom(100_000))
    before = stored(cas.node)
    for label, token in tokens.items():
        with cas.client(token) as http:
            for method, path, body in cas_requests(upload):
                answer = http.request(method, path, content=body)
                assert answer.status_code == 401, (label, path, answer.text)
                assert_refused(answer, 401, "Unauthorized")
            reconstruction = http.get(f"/cas/v1/reconstructions/{upload.file.file_hash}")
            assert_refused(reconstruction, 401, "Unauthorized")
    assert stored(cas.node) == before
    assert_not_stored(cas.node, upload)
    # A token that expired only just now is still taken (clock skew), up to SKEW seconds.
    with cas.client(forged(cas.node, expires=now - 1)) as http:
        name, body = upload.xorbs[0]
        assert post_xorb(http, name, body).status_code == 200


def test_upload_with_a_read_token_is_forbidden(cas: Cas, committed: XetUpload) -> None:
    with cas.node.client(cas.node.admin_token) as http:
        read = cas_token(http, REPO, "read")
    upload = xet_upload(os.urandom(100_000))
    before = stored(cas.node)
    with cas.client(read) as http:
        for _method, path, body in cas_requests(upload):
            assert_refused(http.post(path, content=body), 403, "Forbidden")
        # What it is for still works.
        found = http.get(f"/cas/v1/reconstructions/{committed.file.file_hash}")
        assert found.status_code == 200, found.text
    assert stored(cas.node) == before
    assert_not_stored(cas.node, upload)


def test_anonymous_read_token_cannot_upload(cas: Cas, committed: XetUpload) -> None:
    with cas.node.client() as anonymous:
        read = cas_token(anonymous, REPO, "read")  # a public repo: anyone may read
    upload = xet_upload(os.urandom(100_000))
    before = stored(cas.node)
    with cas.client(read) as http:
        for _method, path, body in cas_requests(upload):
            assert_refused(http.post(path, content=body), 401, "Unauthorized")
        assert http.get(f"/cas/v1/reconstructions/{committed.file.file_hash}").status_code == 200
    assert stored(cas.node) == before


def test_another_user_gets_no_write_token_and_reads_nothing_through_their_own(
    cas: Cas, committed: XetUpload, make_token: Callable[..., str]
) -> None:
    bob = make_token("bob", write=True)
    with cas.node.client(bob) as http:
        assert_refused(http.get(f"/api/models/{REPO}/xet-write-token/main"), 403, "Forbidden")
        assert http.post("/api/repos/create", json={"name": "own"}).status_code == 200
        own = cas_token(http, "bob/own")
        # His Hub token is no CAS token.
        assert_refused(post_xorb(http, *committed.xorbs[0]), 401, "Unauthorized")
    with cas.client(own) as http:
        for version in ("v1", "v2"):
            answer = http.get(f"/cas/{version}/reconstructions/{committed.file.file_hash}")
            assert_refused(answer, 404, "NotFound")

    # A file of a private repo of the admin: the dedup answer for its first chunk (which tells
    # that the node holds it, and how it goes on) is for the admin, not for bob.
    secret = xet_upload(os.urandom(200_000))
    first_chunk = chunk_hash(secret.data[: 64 * KiB])
    with cas.node.client(cas.node.admin_token) as admin:
        created = admin.post("/api/repos/create", json={"name": "secret", "private": True})
        assert created.status_code == 200
        with cas.client(cas_token(admin, "admin/secret")) as http:
            send(http, secret)
            assert commit(admin, "admin/secret", "w.bin", secret).status_code == 200
            assert http.get(f"/cas/v1/chunks/default/{first_chunk}").status_code == 200
        with cas.node.client(bob) as http:
            assert http.get("/api/models/admin/secret/xet-read-token/main").status_code == 404
    with cas.client(own) as http:
        assert_refused(http.get(f"/cas/v1/chunks/default/{first_chunk}"), 404, "NotFound")
        answer = http.get(f"/cas/v1/reconstructions/{secret.file.file_hash}")
        assert_refused(answer, 404, "NotFound")


def test_reconstruction_of_a_file_of_another_repo_is_not_found(
    cas: Cas, committed: XetUpload
) -> None:
    with cas.node.client(cas.node.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "elsewhere"}).status_code == 200
        elsewhere = cas_token(http, "admin/elsewhere", "read")
    with cas.client(elsewhere) as http:
        for version in ("v1", "v2"):
            answer = http.get(f"/cas/{version}/reconstructions/{committed.file.file_hash}")
            assert_refused(answer, 404, "NotFound")
    with cas.client() as http:  # and with this repo's token, it is there
        assert http.get(f"/cas/v1/reconstructions/{committed.file.file_hash}").status_code == 200


# -- paths, ranges, fetch URLs --------------------------------------------------------------


def malformed(good: XetHash) -> list[str]:
    text_form = good.hex
    return [
        text_form.upper(),
        text_form[:-1],
        text_form + "0",
        "g" * 64,
        text_form[:-1] + "G",
        " " + text_form[1:],
    ]


def test_malformed_hash_in_a_path_is_refused_with_xet_invalid(
    cas: Cas, committed: XetUpload
) -> None:
    name, body = committed.xorbs[0]
    before = stored(cas.node)
    with cas.client() as http:
        for bad in malformed(name):
            for method, path, content in [
                ("POST", f"/cas/v1/xorbs/default/{bad}", body),
                ("POST", f"/cas/v1/xorb-grants/default/{bad}", b"{}"),
                ("GET", f"/cas/v1/chunks/default/{bad}", None),
                ("GET", f"/cas/v1/reconstructions/{bad}", None),
                ("GET", f"/cas/v2/reconstructions/{bad}", None),
                ("GET", f"/cas/fetch/{bad}", None),
            ]:
                answer = http.request(method, path, content=content)
                assert answer.status_code == 400, (path, answer.text)
                assert_refused(answer, 400, "XetInvalid")
    assert stored(cas.node) == before


def test_reconstruction_range_malformed_is_400_and_past_the_end_416(
    cas: Cas, committed: XetUpload
) -> None:
    for version in ("v1", "v2"):
        assert_ranges_checked(cas, committed, f"/cas/{version}/reconstructions")


def assert_ranges_checked(cas: Cas, committed: XetUpload, route: str) -> None:
    size = len(committed.data)
    url = f"{route}/{committed.file.file_hash}"
    with cas.client() as http:
        for bad in [
            "bytes=abc",
            "bytes=10-5",
            "bytes=-500",
            "bytes=0-10,20-30",
            "items=0-10",
            "bytes 0-10",
            "bytes=1" + "0" * 30 + "-",
        ]:
            assert_refused(http.get(url, headers={"Range": bad}), 400, "BadRequest", bad)
        for past in [f"bytes={size}-{size + 10}", f"bytes={size}-", "bytes=99999999999-"]:
            answer = http.get(url, headers={"Range": past})
            assert_refused(answer, 416, "RangeNotSatisfiable", past)
            assert answer.headers["Content-Range"] == f"bytes */{size}"
        # The last byte alone, and a range running past the end, are fine.
        assert http.get(url, headers={"Range": f"bytes={size - 1}-{size - 1}"}).status_code == 200
        assert http.get(url, headers={"Range": f"bytes=0-{size * 2}"}).status_code == 200


def fetch_url(http: httpx.Client, upload: XetUpload) -> tuple[str, str]:
    """A signed fetch URL of the file's first xorb, from a v1 reconstruction, and its range."""
    answer = http.get(f"/cas/v1/reconstructions/{upload.file.file_hash}")
    assert answer.status_code == 200, answer.text
    (fetch, *_) = answer.json()["fetch_info"][upload.xorbs[0][0].hex]
    span = fetch["url_range"]
    return fetch["url"], f"bytes={span['start']}-{span['end']}"


def test_fetch_url_with_a_bad_or_expired_signature_is_unauthorized(
    cas: Cas, committed: XetUpload
) -> None:
    name, body = committed.xorbs[0]
    secret = cas.node.runtime.identity.secret
    with cas.client() as http:
        url, wanted = fetch_url(http, committed)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    good = httpx.get(url, headers={"Range": wanted}, follow_redirects=True)  # S3: presigned
    assert good.status_code == 206
    start, end = (int(n) for n in wanted.removeprefix("bytes=").split("-"))
    assert good.content == body[start : end + 1]

    past = str(int(time.time()) - 10)
    later = str(int(query["expires"]) + 3600)
    other = committed.xorbs[1][0].hex
    refused = {
        "no signature": {"expires": query["expires"]},
        "nothing": {},
        "signature altered": {**query, "sig": query["sig"][::-1]},
        "expiry moved": {**query, "expires": later},
        "expired, signed by the node": {
            "expires": past,
            "sig": grants.fetch_signature(secret, name.hex, int(past)),
        },
        "signed for another xorb": {
            "expires": query["expires"],
            "sig": grants.fetch_signature(secret, other, int(query["expires"])),
        },
        "expiry not a number": {**query, "expires": "soon"},
        "expiry of 5000 digits": {"expires": "9" * 5000, "sig": sign(secret, "x")},
        "expiry in other digits": {"expires": "١٢٣", "sig": query["sig"]},
        "expiry a superscript digit": {"expires": "²", "sig": query["sig"]},
    }
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    for label, params in refused.items():
        answer = httpx.get(base, params=params, headers={"Range": wanted})
        assert answer.status_code == 401, (label, answer.status_code, answer.text)
        assert_refused(answer, 401, "Unauthorized")


# -- idempotency ----------------------------------------------------------------------------


def test_same_xorb_and_same_shard_twice_store_once(cas: Cas) -> None:
    upload = xet_upload(os.urandom(400_000), per_xorb=4)
    with cas.client() as http:
        for name, body in upload.xorbs:
            assert post_xorb(http, name, body).json() == {"was_inserted": True}
        after_xorbs = stored(cas.node)
        for name, body in upload.xorbs:
            assert post_xorb(http, name, body).json() == {"was_inserted": False}
        assert stored(cas.node) == after_xorbs
        assert post_shard(http, upload.shard()).json() == {"result": 1}
        after_shard = stored(cas.node)
        assert post_shard(http, upload.shard()).json() == {"result": 0}
        assert stored(cas.node) == after_shard
        # A file registered already is not rebuilt again, but its SHA-256 claim still holds.
        wrong = replace(upload.file, sha256=hashlib.sha256(b"other").hexdigest())
        assert_refused(post_shard(http, upload.shard(wrong)), 400, "Sha256Mismatch")
        assert stored(cas.node) == after_shard
        # A xorb stored already is granted: the client then sends nothing.
        assert http.post(f"/cas/v1/xorb-grants/default/{upload.xorbs[0][0]}").status_code == 200
    with cas.node.runtime.db.read() as tx:
        record = tx.xet.file(upload.file.file_hash)
        assert record is not None and record.sha256 == upload.sha256
        assert record.blake3 == upload.blake3 and record.size == len(upload.data)
        blob = tx.blobs.get(upload.blake3)
        assert blob is not None and blob.sha256 == upload.sha256
    new = after_xorbs.digests - stored(cas.node).digests
    assert not new


def test_same_xorb_from_many_threads_at_once_is_stored_once(cas: Cas) -> None:
    upload = xet_upload(os.urandom(2 * MiB), per_xorb=64)
    ((name, body),) = upload.xorbs
    xorb_blob = Digest(blake3.blake3(body).hexdigest())
    before = stored(cas.node)
    senders = 8
    ready = threading.Barrier(senders)

    def send_one(_: int) -> httpx.Response:
        with cas.client() as http:
            ready.wait(timeout=30)
            return post_xorb(http, name, body)

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send_one, range(senders)))
    assert [a.status_code for a in answers] == [200] * senders, [a.text for a in answers]
    assert sum(a.json()["was_inserted"] for a in answers) == 1
    after = stored(cas.node)
    assert after.digests - before.digests == {xorb_blob}
    assert dict(after.rows)["xorb"] == dict(before.rows)["xorb"] + 1
    assert not after.leftovers

    # And the shard, from as many threads: one registers the file, the others find it.
    ready.reset()

    def send_shard(_: int) -> httpx.Response:
        with cas.client() as http:
            ready.wait(timeout=30)
            return post_shard(http, upload.shard())

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send_shard, range(senders)))
    assert [a.status_code for a in answers] == [200] * senders, [a.text for a in answers]
    assert sorted(a.json()["result"] for a in answers) == [0] * (senders - 1) + [1]
    final = stored(cas.node)
    assert dict(final.rows)["xet_file"] == dict(before.rows)["xet_file"] + 1
    assert dict(final.rows)["blob"] == dict(before.rows)["blob"] + 2  # the xorb, the file
    assert final.digests == after.digests  # the file is no blob of its own: its xorb holds it
