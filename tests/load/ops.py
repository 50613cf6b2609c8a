"""The operations a load worker draws from: downloads (whole and ranged, through `/resolve` and
`/v1/blobs`), uploads (a native blob PUT, the Hub's preupload/LFS/commit flow), metadata reads,
and bad requests that must get their own 4xx and error code.

Each operation checks what came back, byte for byte where there are bytes, and raises
`UnexpectedError` when it is not what a correct node answers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import blake3
import httpx

from tests.load.fixture import SEARCH_WORD, File, Fixture

KiB, MiB = 1024, 1024 * 1024
RANGE_MAX = 4 * MiB
BLOB_SIZES = (64 * KiB, MiB, 9 * MiB)  # 9 MiB: past the node's O_DIRECT threshold (8 MiB)
BLOB_WEIGHTS = (4, 3, 1)
LFS_SIZES = (256 * KiB, 2 * MiB)
LFS_JSON = "application/vnd.git-lfs+json"
NDJSON = "application/x-ndjson"


class UnexpectedError(Exception):
    """An answer a correct node would not give: status, error code, headers or bytes."""


@dataclass(frozen=True)
class Done:
    """What one operation moved: HTTP requests made, body bytes received and sent."""

    requests: int = 1
    down: int = 0
    up: int = 0


@dataclass
class Context:
    http: httpx.AsyncClient  # on the node (or a static server for downloads), admin token
    fixture: Fixture
    serial: itertools.count[int] = field(default_factory=itertools.count)
    pool: bytes = field(default_factory=lambda: os.urandom(max(BLOB_SIZES + LFS_SIZES)))

    def fresh(self, rng: random.Random, size: int) -> bytes:
        """`size` bytes no node has seen: a random prefix, then a random cut of the pool."""
        start = rng.randrange(len(self.pool) - size + 16 + 1)
        return os.urandom(16) + self.pool[start : start + size - 16]


Operation = Callable[[Context, random.Random], Awaitable[Done]]


def expect(response: httpx.Response, status: int, code: str | None = None) -> None:
    got_code = response.headers.get("x-error-code")
    if response.status_code == status and (code is None or got_code == code):
        return
    request = response.request
    wanted = f"{status}{' ' + code if code else ''}"
    raise UnexpectedError(
        f"{request.method} {request.url.path} -> {response.status_code} {got_code or ''} "
        f"(expected {wanted}): {response.text[:300]}"
    )


def _pick(ctx: Context, rng: random.Random) -> File:
    return rng.choice(ctx.fixture.files)


def _resolve_url(ctx: Context, file: File) -> str:
    return f"/{ctx.fixture.repo}/resolve/{ctx.fixture.sha}/{file.path}"


async def _download(ctx: Context, url: str, file: File) -> Done:
    """GET the whole file, streamed and hashed as it arrives; length and BLAKE3 must match."""
    hasher, received = blake3.blake3(), 0
    async with ctx.http.stream("GET", url) as response:
        if response.status_code != 200:
            await response.aread()
            expect(response, 200)
        async for chunk in response.aiter_raw():
            hasher.update(chunk)
            received += len(chunk)
    if received != len(file.data) or hasher.hexdigest() != file.blake3:
        raise UnexpectedError(f"GET {url}: {received} bytes with another hash than {file.path}")
    return Done(down=received)


async def _download_range(ctx: Context, url: str, file: File, rng: random.Random) -> Done:
    """GET one random byte range; status 206, Content-Range and the bytes must match."""
    size = len(file.data)
    start = rng.randrange(size)
    end = start + rng.randint(1, min(RANGE_MAX, size - start))  # exclusive
    response = await ctx.http.get(url, headers={"range": f"bytes={start}-{end - 1}"})
    expect(response, 206)
    content_range = response.headers.get("content-range")
    if content_range != f"bytes {start}-{end - 1}/{size}":
        raise UnexpectedError(f"GET {url} range {start}-{end - 1}: Content-Range {content_range}")
    if response.content != file.data[start:end]:
        raise UnexpectedError(f"GET {url} range {start}-{end - 1}: other bytes")
    return Done(down=len(response.content))


async def download_resolve(ctx: Context, rng: random.Random) -> Done:
    file = _pick(ctx, rng)
    return await _download(ctx, _resolve_url(ctx, file), file)


async def download_resolve_range(ctx: Context, rng: random.Random) -> Done:
    file = _pick(ctx, rng)
    return await _download_range(ctx, _resolve_url(ctx, file), file, rng)


async def download_blob(ctx: Context, rng: random.Random) -> Done:
    file = _pick(ctx, rng)
    return await _download(ctx, f"/v1/blobs/{file.blake3}", file)


async def download_blob_range(ctx: Context, rng: random.Random) -> Done:
    file = _pick(ctx, rng)
    return await _download_range(ctx, f"/v1/blobs/{file.blake3}", file, rng)


async def upload_blob(ctx: Context, rng: random.Random) -> Done:
    """PUT new bytes to /v1/blobs/{blake3}: stored (201) with the right hashes and size."""
    data = ctx.fresh(rng, rng.choices(BLOB_SIZES, BLOB_WEIGHTS)[0])
    digest = blake3.blake3(data).hexdigest()
    response = await ctx.http.put(f"/v1/blobs/{digest}", content=data)
    expect(response, 201)
    body = response.json()
    wanted = {"blake3": digest, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if {key: body.get(key) for key in wanted} != wanted:
        raise UnexpectedError(f"PUT /v1/blobs/{digest}: answered {body}")
    return Done(up=len(data))


async def _lfs_upload(ctx: Context, data: bytes, oid: str) -> int:
    """The Git-LFS batch, the signed PUT and the verify call; returns the requests made."""
    repo = ctx.fixture.upload_repo
    objects = [{"oid": oid, "size": len(data)}]
    batch = await ctx.http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": objects},
        headers={"accept": LFS_JSON},
    )
    expect(batch, 200)
    actions = batch.json()["objects"][0].get("actions") or {}
    if "upload" not in actions or "verify" not in actions:
        raise UnexpectedError(f"LFS batch for new bytes offers no upload: {batch.text[:300]}")
    expect(await ctx.http.put(actions["upload"]["href"], content=data), 200)
    verify = await ctx.http.post(actions["verify"]["href"], json=objects[0])
    expect(verify, 200)
    return 3


async def upload_commit(ctx: Context, rng: random.Random) -> Done:
    """What huggingface_hub does for `upload_file`: preupload, LFS upload, NDJSON commit; then
    a HEAD of the committed file must answer its size and SHA-256."""
    data = ctx.fresh(rng, rng.choice(LFS_SIZES))
    oid, path = hashlib.sha256(data).hexdigest(), f"up/{next(ctx.serial)}.safetensors"
    repo = ctx.fixture.upload_repo
    sample = base64.b64encode(data[:512]).decode()
    files = [{"path": path, "size": len(data), "sample": sample}]
    preupload = await ctx.http.post(f"/api/models/{repo}/preupload/main", json={"files": files})
    expect(preupload, 200)
    if preupload.json()["files"][0]["uploadMode"] != "lfs":
        raise UnexpectedError(f"preupload of {path}: {preupload.text[:300]}")
    requests = 1 + await _lfs_upload(ctx, data, oid)
    lines = [
        {"key": "header", "value": {"summary": f"load {path}"}},
        {
            "key": "lfsFile",
            "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)},
        },
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    commit = await ctx.http.post(
        f"/api/models/{repo}/commit/main", content=body, headers={"content-type": NDJSON}
    )
    expect(commit, 200)
    head = await ctx.http.head(f"/{repo}/resolve/{commit.json()['commitOid']}/{path}")
    expect(head, 200)
    if head.headers.get("x-linked-size") != str(len(data)) or oid not in head.headers.get(
        "x-linked-etag", ""
    ):
        raise UnexpectedError(f"HEAD of committed {path}: {dict(head.headers)}")
    return Done(requests=requests + 2, up=len(data))


def _paths(ctx: Context) -> set[str]:
    return {f.path for f in ctx.fixture.files}


async def model_info(ctx: Context, rng: random.Random) -> Done:  # noqa: ARG001 - an Operation
    response = await ctx.http.get(f"/api/models/{ctx.fixture.repo}")
    expect(response, 200)
    info = response.json()
    listed = {s["rfilename"] for s in info.get("siblings") or []}
    if info.get("sha") != ctx.fixture.sha or not _paths(ctx) <= listed:
        raise UnexpectedError(f"model info: sha {info.get('sha')}, files {sorted(listed)}")
    return Done(down=len(response.content))


async def revision(ctx: Context, rng: random.Random) -> Done:
    """Resolve `main` as the Hub client does: revision info, then HEAD of a file on it."""
    repo, file = ctx.fixture.repo, _pick(ctx, rng)
    info = await ctx.http.get(f"/api/models/{repo}/revision/main")
    expect(info, 200)
    head = await ctx.http.head(f"/{repo}/resolve/main/{file.path}")
    expect(head, 200)
    commits = (info.json().get("sha"), head.headers.get("x-repo-commit"))
    if commits != (ctx.fixture.sha, ctx.fixture.sha):
        raise UnexpectedError(f"main resolves to {commits}, expected {ctx.fixture.sha}")
    if head.headers.get("x-linked-size") != str(len(file.data)):
        raise UnexpectedError(f"HEAD {file.path}: X-Linked-Size {head.headers}")
    return Done(requests=2, down=len(info.content))


async def tree(ctx: Context, rng: random.Random) -> Done:  # noqa: ARG001 - an Operation
    response = await ctx.http.get(f"/api/models/{ctx.fixture.repo}/tree/main")
    expect(response, 200)
    sizes = {item["path"]: item["size"] for item in response.json()}
    wanted = {f.path: len(f.data) for f in ctx.fixture.files}
    if {path: sizes.get(path) for path in wanted} != wanted:
        raise UnexpectedError(f"tree: {sizes}")
    return Done(down=len(response.content))


async def search(ctx: Context, rng: random.Random) -> Done:
    """The native search or the Hub's listing; either must find the fixture by its card."""
    if rng.random() < 0.5:
        response = await ctx.http.get("/v1/search", params={"q": SEARCH_WORD})
        expect(response, 200)
        found = [hit["id"] for hit in response.json()["results"]]
    else:
        response = await ctx.http.get("/api/models", params={"search": SEARCH_WORD})
        expect(response, 200)
        found = [item["id"] for item in response.json()]
    if ctx.fixture.repo not in found:
        raise UnexpectedError(f"search for {SEARCH_WORD!r} found {found}")
    return Done(down=len(response.content))


async def _wrong_hash_put(ctx: Context, rng: random.Random) -> Done:
    """New bytes PUT under another blob's BLAKE3: refused (400), and nothing stored there."""
    data = ctx.fresh(rng, 64 * KiB)
    claimed = blake3.blake3(data + b"!").hexdigest()
    expect(await ctx.http.put(f"/v1/blobs/{claimed}", content=data), 400, "DigestMismatch")
    expect(await ctx.http.get(f"/v1/blobs/{claimed}"), 404, "BlobNotFound")
    return Done(requests=2, up=len(data))


async def bad_request(ctx: Context, rng: random.Random) -> Done:
    """One of several requests that must fail with a given status and error code."""
    fx, n = ctx.fixture, next(ctx.serial)
    namespace = fx.repo.split("/")[0]
    cases = [
        (f"/api/models/{namespace}/no-such-repo-{n}", 404, "RepoNotFound"),
        (f"/{fx.repo}/resolve/{fx.sha}/no-such-file-{n}.bin", 404, "EntryNotFound"),
        (f"/{fx.repo}/resolve/no-such-branch-{n}/config.json", 404, "RevisionNotFound"),
        (f"/v1/blobs/{os.urandom(32).hex()}", 404, "BlobNotFound"),
        ("/v1/blobs/not-a-digest", 400, "BadRequest"),
    ]
    choice = rng.randrange(len(cases) + 1)
    if choice == len(cases):
        return await _wrong_hash_put(ctx, rng)
    url, status, code = cases[choice]
    expect(await ctx.http.get(url), status, code)
    return Done()


OPERATIONS: dict[str, Operation] = {
    "download resolve": download_resolve,
    "download resolve range": download_resolve_range,
    "download blob": download_blob,
    "download blob range": download_blob_range,
    "upload blob": upload_blob,
    "upload commit": upload_commit,
    "model info": model_info,
    "revision": revision,
    "tree": tree,
    "search": search,
    "bad request": bad_request,
}
DOWNLOADS = {
    "download resolve": 4,
    "download resolve range": 3,
    "download blob": 2,
    "download blob range": 2,
}
MIXED = {
    **DOWNLOADS,
    "upload blob": 2,
    "upload commit": 1,
    "model info": 2,
    "revision": 2,
    "tree": 2,
    "search": 2,
    "bad request": 2,
}
