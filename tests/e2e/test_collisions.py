"""Two independent nodes that made repos of the same id, with real node processes: peering
never replaces, hides or takes over the repo a node made itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from huggingface_hub import HfApi

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def files_of(node: NodeProcess, repo: str) -> set[str]:
    return {f.rfilename for f in api(node).model_info(repo).siblings or []}


def test_a_peers_repo_of_the_same_id_never_replaces_the_one_made_here(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    api(a).create_repo("admin/same")
    api(a).upload_file(path_or_fileobj=b"from a", path_in_repo="a.txt", repo_id="admin/same")
    api(a).create_repo("admin/only-on-a")
    api(b).create_repo("admin/same")
    head = (
        api(b)
        .upload_file(path_or_fileobj=b"from b", path_in_repo="b.txt", repo_id="admin/same")
        .oid
    )
    b.add_peer(a)
    wait_until(lambda: api(b).repo_exists("admin/only-on-a"))  # B has read A's whole feed
    assert api(b).model_info("admin/same").sha == head
    assert files_of(b, "admin/same") == {".gitattributes", "b.txt"}
    # Still B's own: writable on B.
    api(b).upload_file(path_or_fileobj=b"more", path_in_repo="c.txt", repo_id="admin/same")
    assert files_of(b, "admin/same") == {".gitattributes", "b.txt", "c.txt"}
    # And reported: in the peer's view, the status and the metrics.
    wait_until(lambda: b.peers()[0]["collisions"] == 1)
    with b.client() as http:
        status = http.get("/v1/status").json()
        metrics = http.get("/metrics").text
    assert [(c["repo"], c["home"]) for c in status["collisions"]] == [("model/admin/same", "a")]
    assert "modelyard_peer_repo_collisions{" in metrics and "} 1.0" in metrics
    # A's repo is untouched on A.
    assert files_of(a, "admin/same") == {".gitattributes", "a.txt"}
