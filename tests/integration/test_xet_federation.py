"""Xet files across nodes: a replica fetches the xorbs it lacks, not whole files, so a new
version of a file moves its changed chunks only; it serves both versions with its home gone."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from registry.domain.digest import Digest
from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.integration.test_federation_basic import wait_for
from tests.integration.test_xet import stock_client

SIZE = 24 * 1024 * 1024


def stored_bytes(node: RunningNode) -> dict[str, int]:
    return {b.digest.hex: b.size for b in node.runtime.blobs.iter_blobs()}


def commit_on(node: RunningNode, repo: str) -> str | None:
    with node.client(ADMIN_TOKEN) as http:
        answer = http.get(f"/api/models/{repo}")
    return answer.json()["sha"] if answer.status_code == 200 else None


@pytest.mark.slow
def test_replica_moves_only_new_chunks_and_serves_both_versions_without_home(
    node: RunningNode, start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN})
    assert added.status_code == 201, added.text
    v1 = os.urandom(SIZE)
    middle = SIZE // 2
    v2 = v1[:middle] + os.urandom(1024) + v1[middle + 1024 :]
    (tmp_path / "v1.bin").write_bytes(v1)
    (tmp_path / "v2.bin").write_bytes(v2)

    def upload(name: str, revision_message: str) -> str:
        out = stock_client(
            tmp_path,
            node,
            f"""
            if not api.repo_exists("admin/fed"):
                api.create_repo("admin/fed")
            info = api.upload_file(path_or_fileobj={str(tmp_path / name)!r},
                                   path_in_repo="model.safetensors", repo_id="admin/fed",
                                   commit_message={revision_message!r})
            print(info.oid)
            """,
        )
        return out.stdout.strip().splitlines()[-1]

    first = upload("v1.bin", "v1")
    wait_for(lambda: commit_on(replica, "admin/fed") == first, timeout=60)
    wait_for(lambda: replica.runtime.xet.xet_hashes({_digest(v1)}) != {}, timeout=60)
    before = stored_bytes(replica)

    second = upload("v2.bin", "v2")
    wait_for(lambda: commit_on(replica, "admin/fed") == second, timeout=60)
    wait_for(lambda: replica.runtime.xet.xet_hashes({_digest(v2)}) != {}, timeout=60)
    moved = sum(size for digest, size in stored_bytes(replica).items() if digest not in before)
    assert moved <= 0.05 * SIZE, f"the replica stored {moved} new bytes for a 1 KiB edit"
    assert node.log.count("GET", f"/v1/blobs/{_digest(v2).hex}") == 0  # never the whole file

    node.server.stop()  # the home is gone: the replica serves both versions on its own
    for revision, data in ((first, v1), (second, v2)):
        out = stock_client(
            tmp_path,
            replica,
            f"""
            from huggingface_hub import hf_hub_download
            print(hf_hub_download("admin/fed", "model.safetensors", revision={revision!r},
                                  endpoint=endpoint, token=token))
            """,
            home=f"home-{revision[:8]}",
        )
        assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == data
        with replica.client(ADMIN_TOKEN) as http:
            plain = http.get(
                f"/admin/fed/resolve/{revision}/model.safetensors",
                headers={"Range": f"bytes={middle - 10}-{middle + 2000}"},
            )
        assert plain.status_code == 206 and plain.content == data[middle - 10 : middle + 2001]
    assert replica.log.count("GET", "/cas/fetch/") >= 2  # through Xet, from the replica


def _digest(data: bytes) -> Digest:
    return Digest(blake3.blake3(data).hexdigest())
