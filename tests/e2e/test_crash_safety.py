"""SIGKILL right after a commit and in the middle of large uploads: nothing acknowledged is lost,
nothing partial becomes visible, and the blob store stays consistent (issue must-show item 5).

The node runs as a separate process (tests/e2e/nodeproc.py) on one data dir and port throughout.
Writes go through the stock huggingface_hub client; the interrupted uploads are raw streaming
PUTs (native `/v1/blobs/{blake3}` and a Git-LFS href) whose bodies keep flowing slowly until the
node is killed, so the kill always lands mid-body.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.e2e.nodeproc import NodeProcess, uploads_in_flight, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "myd_crash_safety_admin_token"
REPO = "admin/crash"
MiB = 1024 * 1024
WEIGHTS_SIZE = 20 * MiB
BIG_SIZE = 300 * MiB  # declared size of each interrupted upload
PIECE = MiB  # the interrupted bodies repeat one random piece (cheap to hash on our side)
FAST_PART = 8 * MiB  # sent at once; the rest trickles until the kill


@dataclass
class Acknowledged:
    """What the node acknowledged before it was killed, with the bytes it must still serve."""

    first: str = ""  # commit with the folder (dev and v1 point here)
    second: str = ""  # commit adding late.txt on main, right before the kill
    files: dict[str, bytes] = field(default_factory=dict)

    def expected_at(self, revision: str) -> dict[str, bytes]:
        """The files of a revision: main and the second commit have late.txt on top."""
        if revision in ("main", self.second):
            return {**self.files, "late.txt": b"acknowledged"}
        return dict(self.files)


@dataclass
class Interrupted:
    """One upload that was in flight when the node died."""

    name: str
    piece: bytes
    blake3: str
    sha256: str
    outcome: list[object] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, seed: int) -> Interrupted:
        piece = random.Random(seed).randbytes(PIECE)
        b3, sha = blake3.blake3(), hashlib.sha256()
        for _ in range(BIG_SIZE // PIECE):
            b3.update(piece)
            sha.update(piece)
        return cls(name, piece, b3.hexdigest(), sha.hexdigest())

    def body(self, killed: threading.Event | None) -> Iterator[bytes]:
        """All BIG_SIZE bytes; with `killed`, fast at first, then slowly until it is set.

        After the kill the rest goes at full speed into the dead socket, so the client fails
        with a write error (ending early would fail inside h11 instead, unwrapped by httpx).
        """
        for sent in range(0, BIG_SIZE, PIECE):
            if killed is not None and sent >= FAST_PART and not killed.is_set():
                killed.wait(0.02)
            yield self.piece


def write_acknowledged(node: NodeProcess, tmp_path: Path) -> Acknowledged:
    api = HfApi(endpoint=node.url, token=TOKEN)
    acked = Acknowledged()
    acked.files = {
        "w.safetensors": random.Random(1).randbytes(WEIGHTS_SIZE),  # LFS path
        "config.json": b'{"dim": 64}',
        "sub/notes.txt": b"nested, regular",
    }
    folder = tmp_path / "model"
    for path, data in acked.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    api.create_repo(REPO)
    acked.first = api.upload_folder(folder_path=folder, repo_id=REPO, commit_message="v1").oid
    api.create_branch(REPO, branch="dev")
    api.create_tag(REPO, tag="v1", revision=acked.first)
    acked.second = api.upload_file(
        path_or_fileobj=b"acknowledged", path_in_repo="late.txt", repo_id=REPO
    ).oid
    return acked


def assert_acknowledged_intact(node: NodeProcess, acked: Acknowledged, cache: Path) -> None:
    api = HfApi(endpoint=node.url, token=TOKEN)
    commits = [c.commit_id for c in api.list_repo_commits(REPO)]
    assert commits[:2] == [acked.second, acked.first]
    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {
        "main": acked.second,
        "dev": acked.first,
    }
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": acked.first}
    for revision in ("main", "dev", "v1", acked.first, acked.second):
        for path, data in acked.expected_at(revision).items():
            local = hf_hub_download(
                REPO,
                path,
                revision=revision,
                cache_dir=cache / revision.replace("/", "_"),  # a fresh cache: real downloads
                endpoint=node.url,
                token=TOKEN,
            )
            assert Path(local).read_bytes() == data, (revision, path)
    with node.client() as http:
        for data in acked.expected_at("main").values():
            response = http.get(f"/v1/blobs/{blake3.blake3(data).hexdigest()}")
            assert response.status_code == 200 and response.content == data


def lfs_href(node: NodeProcess, upload: Interrupted) -> str:
    with node.client() as http:
        response = http.post(
            f"/{REPO}.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": upload.sha256, "size": BIG_SIZE}],
            },
            headers={"accept": "application/vnd.git-lfs+json"},
        )
    response.raise_for_status()
    (answer,) = response.json()["objects"]
    return str(answer["actions"]["upload"]["href"]) if "actions" in answer else ""


def send(url: str, upload: Interrupted, killed: threading.Event, headers: dict[str, str]) -> None:
    """PUT the body; record the response or the transport error the dying node causes."""
    try:
        response = httpx.put(
            url,
            content=upload.body(killed),
            headers={"content-length": str(BIG_SIZE), **headers},
            timeout=60,
        )
        upload.outcome.append(response.status_code)
    except Exception as exc:  # any failure is the expected outcome; the test checks which
        upload.outcome.append(exc)


def kill_during_uploads(node: NodeProcess) -> list[Interrupted]:
    raw, lfs = Interrupted.of("raw", seed=2), Interrupted.of("lfs", seed=3)
    href = lfs_href(node, lfs)
    assert href, "the node claims to hold an object it never received"
    killed = threading.Event()
    bearer = {"authorization": f"Bearer {TOKEN}"}
    senders = [
        threading.Thread(
            target=send, args=(f"{node.url}/v1/blobs/{raw.blake3}", raw, killed, bearer)
        ),
        threading.Thread(target=send, args=(href, lfs, killed, {})),  # LFS PUTs carry no auth
    ]
    for sender in senders:
        sender.start()
    try:
        wait_for(lambda: len(uploads_in_flight(node)) >= 2, 30, "both uploads writing temp files")
    finally:
        node.kill()
        killed.set()
        for sender in senders:
            sender.join(timeout=30)
    for upload in (raw, lfs):
        assert len(upload.outcome) == 1 and isinstance(upload.outcome[0], httpx.TransportError), (
            f"{upload.name} upload was not cut off by the kill: {upload.outcome}"
        )
    return [raw, lfs]


def assert_not_visible(node: NodeProcess, upload: Interrupted) -> None:
    blobs = node.data_dir / "store" / "blobs"
    assert list(blobs.rglob(upload.blake3)) == [], upload.name
    with node.client() as http:
        assert http.head(f"/v1/blobs/{upload.blake3}").status_code == 404
        assert http.get(f"/v1/blobs/{upload.blake3}").status_code == 404
    assert lfs_href(node, upload), f"{upload.name}: LFS batch says the object is already stored"


def stored_blobs(node: NodeProcess) -> set[str]:
    return {p.name for p in (node.data_dir / "store" / "blobs").rglob("*") if p.is_file()}


def assert_store_consistent(node: NodeProcess) -> None:
    """fsck: every stored file sits at blobs/blake3/<hex[:2]>/<hex> and hashes to <hex>."""
    store = node.data_dir / "store"
    assert list((store / "uploads").iterdir()) == []
    files = [p for p in (store / "blobs").rglob("*") if p.is_file()]
    assert files, "the store holds no blobs at all"
    for path in files:
        assert path.parent.parent == store / "blobs" / "blake3", path
        assert path.parent.name == path.name[:2], path
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(path)
        assert hasher.hexdigest() == path.name, f"{path} does not hash to its name"


def test_node_kill_loses_nothing_acknowledged_and_shows_no_partial_upload(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path / "node", TOKEN)
    try:
        node.start()
        acked = write_acknowledged(node, tmp_path)
        node.kill()  # right after a completed (acknowledged) commit
        node.start()
        assert_acknowledged_intact(node, acked, tmp_path / "cache-1")

        before = stored_blobs(node)
        interrupted = kill_during_uploads(node)
        node.start()
        assert_store_consistent(node)  # uploads/ emptied at start; blobs all verified
        assert stored_blobs(node) == before  # no partial bytes kept under any name
        assert_acknowledged_intact(node, acked, tmp_path / "cache-2")
        for upload in interrupted:
            assert_not_visible(node, upload)

        # The interrupted upload can simply be sent again: nothing stale is in its way.
        raw = interrupted[0]
        with node.client() as http:
            response = http.put(
                f"/v1/blobs/{raw.blake3}",
                content=raw.body(None),
                headers={"content-length": str(BIG_SIZE)},
            )
            assert response.status_code == 201, response.text
            assert response.json()["sha256"] == raw.sha256
            head = http.head(f"/v1/blobs/{raw.blake3}")
            assert head.status_code == 200 and int(head.headers["content-length"]) == BIG_SIZE
        assert_store_consistent(node)
        assert stored_blobs(node) == before | {raw.blake3}
    finally:
        node.kill()
