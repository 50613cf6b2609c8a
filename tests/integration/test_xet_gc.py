"""gc and Xet: a xorb lives while any file uses it, plus its grace (clients' dedup expiry)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import blake3

from registry.domain.digest import Digest
from tests.conftest import RunningNode
from tests.integration.test_xet import stock_client

XORB_GRACE = 1.0  # seconds: `xet.dedup_seconds`, days by default


def xorb_blobs(node: RunningNode, data: bytes) -> set[Digest]:
    digest = Digest(blake3.blake3(data).hexdigest())
    with node.runtime.db.read() as tx:
        file = tx.xet.file_of(digest)
        assert file is not None, "uploaded through Xet"
        return {x.blake3 for x in tx.xet.xorbs(file.xorbs).values()}


def test_a_shared_xorb_survives_deleting_one_repo_and_an_unused_one_goes_after_its_grace(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = start_node("gc", xet={"dedup_seconds": XORB_GRACE})
    shared, only_a = os.urandom(3 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    (tmp_path / "shared.bin").write_bytes(shared)
    (tmp_path / "only_a.bin").write_bytes(only_a)
    stock_client(
        tmp_path,
        node,
        f"""
        for repo in ("admin/a", "admin/b"):
            api.create_repo(repo)
            api.upload_file(path_or_fileobj={str(tmp_path / "shared.bin")!r},
                            path_in_repo="shared.bin", repo_id=repo)
        api.upload_file(path_or_fileobj={str(tmp_path / "only_a.bin")!r},
                        path_in_repo="only_a.bin", repo_id="admin/a")
        api.delete_repo("admin/a")
        """,
    )
    kept, freed = xorb_blobs(node, shared), xorb_blobs(node, only_a)
    assert kept and freed and not kept & freed
    stored = node.runtime.blobs.stat

    first = node.runtime.collector(0).run(delete=True)
    collected = {g.digest for g in first.garbage}
    assert Digest(blake3.blake3(only_a).hexdigest()) in collected  # the file's row and recipe
    assert not collected & (kept | freed)  # its xorbs wait for their grace
    assert all(stored(d) is not None for d in kept | freed)

    time.sleep(XORB_GRACE + 0.2)
    second = node.runtime.collector(0).run(delete=True)
    assert {g.digest for g in second.garbage} == freed
    assert all(stored(d) is None for d in freed)
    assert all(stored(d) is not None for d in kept)  # repo b's file still names them

    out = stock_client(
        tmp_path,
        node,
        """
        from huggingface_hub import hf_hub_download
        print(hf_hub_download("admin/b", "shared.bin", endpoint=endpoint, token=token))
        """,
        home="download",
    )
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == shared
    with node.client(node.admin_token) as http:
        assert http.get("/admin/b/resolve/main/shared.bin").content == shared
