"""What the load reads: one repo of files of several sizes, published before the load starts,
whose bytes the generator keeps in memory to check every download against."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from dataclasses import dataclass

import blake3
import httpx

MiB = 1024 * 1024
NAMESPACE = "admin"
SEARCH_WORD = "loadprobe"  # in the fixture's card only, so a search for it must find the repo
CARD = (
    f"---\nlicense: mit\nkind: checkpoint\ntags: [{SEARCH_WORD}]\n---\n"
    f"# {SEARCH_WORD}\n\nThe files a load run downloads.\n"
).encode()


@dataclass(frozen=True)
class File:
    path: str
    data: bytes
    blake3: str  # hex
    sha256: str

    @classmethod
    def of(cls, path: str, data: bytes) -> File:
        return cls(path, data, blake3.blake3(data).hexdigest(), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Fixture:
    repo: str  # namespace/name, read by the load (no commits to it while it runs)
    sha: str  # its main commit
    upload_repo: str  # where the load's Hub-flow uploads commit
    files: tuple[File, ...]  # the downloadable files, smallest first

    def file(self, path: str) -> File:
        return next(f for f in self.files if f.path == path)


def fixture_files(large_mib: int, seed: int = 0) -> tuple[File, ...]:
    """Files of several sizes (one not a multiple of any chunk size), random but repeatable."""
    rng = random.Random(seed)
    sizes = {
        "config.json": 2048,
        "weights-small.safetensors": MiB,
        "weights-odd.safetensors": 5 * MiB + 123,
        "weights-large.safetensors": large_mib * MiB,
    }
    return tuple(File.of(path, rng.randbytes(size)) for path, size in sizes.items())


def _lfs_line(file: File) -> dict[str, object]:
    return {
        "key": "lfsFile",
        "value": {"path": file.path, "algo": "sha256", "oid": file.sha256, "size": len(file.data)},
    }


def _inline_line(path: str, data: bytes) -> dict[str, object]:
    content = base64.b64encode(data).decode()
    return {"key": "file", "value": {"path": path, "encoding": "base64", "content": content}}


def _create_repo(http: httpx.Client, name: str) -> None:
    created = http.post("/api/repos/create", json={"name": name, "organization": NAMESPACE})
    if created.status_code != 200:
        raise RuntimeError(f"create {name}: HTTP {created.status_code} {created.text[:500]}")


def publish(http: httpx.Client, name: str, files: tuple[File, ...]) -> Fixture:
    """Create `name` and `name`-uploads; store the files (large ones as blobs through
    `PUT /v1/blobs`, committed as LFS files; small ones inline) in one commit to main.
    `http` carries an admin token."""
    _create_repo(http, name)
    _create_repo(http, f"{name}-uploads")
    lines = [
        {"key": "header", "value": {"summary": "load fixture"}},
        _inline_line("README.md", CARD),
    ]
    for file in files:
        if len(file.data) < MiB:
            lines.append(_inline_line(file.path, file.data))
            continue
        stored = http.put(f"/v1/blobs/{file.blake3}", content=file.data)
        if stored.status_code not in (200, 201):
            raise RuntimeError(f"PUT {file.path}: HTTP {stored.status_code} {stored.text[:500]}")
        lines.append(_lfs_line(file))
    body = "\n".join(json.dumps(line) for line in lines).encode()
    committed = http.post(
        f"/api/models/{NAMESPACE}/{name}/commit/main",
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )
    if committed.status_code != 200:
        raise RuntimeError(f"commit: HTTP {committed.status_code} {committed.text[:500]}")
    return Fixture(
        repo=f"{NAMESPACE}/{name}",
        sha=str(committed.json()["commitOid"]),
        upload_repo=f"{NAMESPACE}/{name}-uploads",
        files=files,
    )
