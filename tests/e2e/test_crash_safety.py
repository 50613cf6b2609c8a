"""kill -9 during and after uploads: nothing acknowledged is lost, nothing partial is visible."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]


def stored_blobs(node: NodeProcess) -> list[Path]:
    return [p for p in (node.data_dir / "store" / "blobs").rglob("*") if p.is_file()]


def in_progress(node: NodeProcess) -> list[Path]:
    return [p for p in (node.data_dir / "store" / "uploads").iterdir() if p.stat().st_size > 0]


def endless_body(chunk: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield chunk


def test_kill_during_and_after_uploads_loses_nothing_acknowledged(
    spawn: Spawn, tmp_path: Path
) -> None:
    node = spawn("crash")
    api = HfApi(endpoint=node.url, token=TOKEN)
    weights = os.urandom(20 * 1024 * 1024)
    api.create_repo("admin/safe")
    first = api.upload_folder(folder_path=_folder(tmp_path, weights), repo_id="admin/safe").oid
    api.create_branch("admin/safe", branch="dev")
    api.create_tag("admin/safe", tag="v1", revision=first)
    second = api.upload_file(
        path_or_fileobj=b"acknowledged", path_in_repo="late.txt", repo_id="admin/safe"
    ).oid
    node.kill()  # right after a completed commit
    node = spawn("crash")

    # A large upload in flight when the node dies: it must leave no visible blob.
    big_chunk = os.urandom(4 * 1024 * 1024)
    claimed = blake3.blake3(b"never completes").hexdigest()

    def upload() -> None:
        try:
            httpx.put(
                f"{node.url}/v1/blobs/{claimed}",
                content=endless_body(big_chunk, 100),
                headers={
                    "authorization": f"Bearer {TOKEN}",
                    "content-length": str(100 * len(big_chunk)),
                },
                timeout=60,
            )
        except httpx.HTTPError:
            pass  # the server died under it: expected

    sender = threading.Thread(target=upload)
    sender.start()
    wait_until(lambda: in_progress(node), 30, 0.01)
    node.kill()
    sender.join(timeout=60)
    node = spawn("crash")

    assert list((node.data_dir / "store" / "uploads").iterdir()) == []  # cleared at start
    api = HfApi(endpoint=node.url, token=TOKEN)
    assert [c.commit_id for c in api.list_repo_commits("admin/safe")][:2] == [second, first]
    refs = api.list_repo_refs("admin/safe")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second, "dev": first}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first)]
    for revision in ("main", "v1", first):
        local = hf_hub_download(
            "admin/safe",
            "w.safetensors",
            revision=revision,
            cache_dir=tmp_path / f"c-{revision}",
            endpoint=node.url,
        )
        assert Path(local).read_bytes() == weights
    late = hf_hub_download("admin/safe", "late.txt", cache_dir=tmp_path / "late", endpoint=node.url)
    assert Path(late).read_bytes() == b"acknowledged"
    with node.client() as http:
        assert http.head(f"/v1/blobs/{claimed}").status_code == 404
    assert all(blake3.blake3(p.read_bytes()).hexdigest() == p.name for p in stored_blobs(node))


def _folder(root: Path, weights: bytes) -> Path:
    folder = root / "model"
    folder.mkdir()
    (folder / "w.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"a": 1}')
    return folder
