"""Scrub and Xet: a xorb whose stored bytes rotted is found, never served, and repaired from a
peer; meanwhile the file it belongs to is still served right (pulled through from the peer)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import blake3

from registry.domain.digest import Digest
from tests.blobs import corrupt_stored_blob, stored_bytes
from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode
from tests.e2e.nodeproc import wait_for
from tests.integration.test_scrub import verify
from tests.integration.test_xet import stock_client


def test_a_rotted_xorb_is_held_and_repaired_from_a_peer(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    a = start_node("a")
    b = start_node("b", sync=FAST_SYNC)
    with b.client(ADMIN_TOKEN) as http:
        assert http.post("/v1/peers", json={"url": a.url, "token": ADMIN_TOKEN}).status_code == 201
    data = os.urandom(5 * 1024 * 1024)
    digest = Digest(blake3.blake3(data).hexdigest())
    (tmp_path / "w.bin").write_bytes(data)
    stock_client(
        tmp_path,
        a,
        f"""
        api.create_repo("admin/rot")
        api.upload_file(path_or_fileobj={str(tmp_path / "w.bin")!r}, path_in_repo="w.bin",
                        repo_id="admin/rot")
        """,
    )
    wait_for(lambda: b.runtime.xet.xet_hashes({digest}) != {}, 60, "b holds every xorb")
    with b.runtime.db.read() as tx:
        file = tx.xet.file_of(digest)
        assert file is not None
        xorb = next(iter(tx.xet.xorbs(file.xorbs).values()))
    good = stored_bytes(b.settings, xorb.blake3)
    corrupt_stored_blob(b.settings, xorb.blake3)

    code, run = verify(b, "--no-repair")
    assert code == 1 and (run["corrupt"], run["unrepaired"]) == (1, 1), run
    assert b.runtime.xet.xet_hashes({digest}) == {}  # no Xet for it while a xorb is held
    with b.client(ADMIN_TOKEN) as http:
        assert http.get("/admin/rot/resolve/main/w.bin").content == data  # from the peer

    code, run = verify(b)
    assert code == 0 and (run["corrupt"], run["repaired"]) == (0, 1), run
    assert stored_bytes(b.settings, xorb.blake3) == good
    assert b.runtime.xet.xet_hashes({digest}) != {}
    out = stock_client(
        tmp_path,
        b,
        """
        from huggingface_hub import hf_hub_download
        print(hf_hub_download("admin/rot", "w.bin", endpoint=endpoint, token=token))
        """,
        home="after-repair",
    )
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == data
