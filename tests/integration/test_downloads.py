"""Download counts: GETs from the first byte count; HEADs and resumed ranges do not."""

from __future__ import annotations

import time
from collections.abc import Callable

from huggingface_hub import HfApi

from tests.conftest import ADMIN_TOKEN, RunningNode


def test_downloads_are_counted_and_sortable(start_node: Callable[..., RunningNode]) -> None:
    node = start_node("counting")  # the default flush interval
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    for name in ("popular", "quiet"):
        api.create_repo(f"admin/{name}")
        api.upload_file(path_or_fileobj=b"w" * 1000, path_in_repo="w.bin", repo_id=f"admin/{name}")
    with node.client() as http:
        for _ in range(3):
            assert http.get("/admin/popular/resolve/main/w.bin").status_code == 200
        http.get("/admin/quiet/resolve/main/w.bin")
        http.head("/admin/quiet/resolve/main/w.bin")  # metadata only: not a download
        http.get("/admin/quiet/resolve/main/w.bin", headers={"range": "bytes=500-"})  # resumed
    deadline = time.monotonic() + 3  # 0.5 s flushes; slack for a loaded CI machine
    # Counts are flushed in the background; the two repos need not land in the same flush.
    while (counts := [api.model_info(f"admin/{n}").downloads for n in ("popular", "quiet")]) != [
        3,
        1,
    ]:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
    assert [m.id for m in api.list_models(sort="downloads")] == ["admin/popular", "admin/quiet"]
    assert [m.downloads for m in api.list_models(sort="downloads")] == [3, 1]
