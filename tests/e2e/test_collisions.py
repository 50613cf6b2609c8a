"""Two independent nodes that made repos of the same id, with real node processes: peering
never replaces, hides or takes over the repo a node made itself, and the peer's repo is there
under its qualified id (`namespace.home/name`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.promrules import assert_fires

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def files_of(node: NodeProcess, repo: str) -> set[str]:
    return {f.rfilename for f in api(node).model_info(repo).siblings or []}


def home_of(node: NodeProcess, repo: str) -> str | None:
    """The home a node names for a repo it replicates (None: its own)."""
    with node.client() as http:
        answer = http.get(f"/api/models/{repo}")
    answer.raise_for_status()
    home: str | None = answer.headers.get("x-modelyard-home")
    return home


def peer_add(node: NodeProcess, peer: NodeProcess) -> subprocess.CompletedProcess[str]:
    """`modelyard peer add` on the node's data dir (the running node picks the peer up)."""
    done = subprocess.run(
        [sys.executable, "-m", "registry", "peer", "add", peer.url, "--token", TOKEN]
        + ["--data-dir", str(node.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def make_same(node: NodeProcess, text: bytes) -> str:
    api(node).create_repo("admin/same")
    return str(
        api(node).upload_file(path_or_fileobj=text, path_in_repo="f.txt", repo_id="admin/same").oid
    )


def test_a_peers_repo_of_the_same_id_never_replaces_the_one_made_here(
    spawn: Spawn, tmp_path: Path
) -> None:
    a, b = spawn("a"), spawn("b")
    make_same(a, b"from a")
    api(a).create_repo("admin/only-on-a")
    head = make_same(b, b"from b")
    # `modelyard peer add` names the collision it sees in A's listing before pulling starts.
    added = peer_add(b, a)
    assert "warning: 1 repos of" in added.stderr and "model/admin/same" in added.stderr, added
    assert "admin/only-on-a" not in added.stderr
    wait_until(lambda: api(b).repo_exists("admin/only-on-a"))  # B has read A's whole feed
    assert api(b).model_info("admin/same").sha == head
    assert home_of(b, "admin/same") is None  # B's own
    # Still B's own: writable on B.
    api(b).upload_file(path_or_fileobj=b"more", path_in_repo="c.txt", repo_id="admin/same")
    assert files_of(b, "admin/same") == {".gitattributes", "f.txt", "c.txt"}
    # A's repo is on B under its qualified id, with its home, for the stock client.
    wait_until(lambda: api(b).repo_exists("admin.a/same"))
    assert home_of(b, "admin.a/same") == "a"
    path = hf_hub_download("admin.a/same", "f.txt", endpoint=b.url, cache_dir=tmp_path / "hub")
    assert Path(path).read_bytes() == b"from a"
    # And reported: in the peer's view, the status and the metrics.
    wait_until(lambda: b.peers()[0]["collisions"] == 1)
    with b.client() as http:
        status = http.get("/v1/status").json()
        metrics = http.get("/metrics").text
        page = http.get("/status").text
    assert [(c["repo"], c["home"], c["local"]) for c in status["collisions"]] == [
        ("model/admin/same", "a", "model/admin.a/same")
    ]
    collisions = page.split('<div id="collisions">', 1)[1].split("</div>", 1)[0]
    assert "<b>model/admin/same</b> of node a" in collisions and "admin.a/same" in collisions
    peer_id = str(b.peers()[0]["id"])
    assert f'modelyard_peer_repo_collisions{{peer="{peer_id}"}} 1.0' in metrics
    names = ("modelyard_peer_repo_collisions",)
    assert_fires(metrics, "ModelyardRepoCollision", names, {peer_id: "1"}, tmp_path)
    # A's repo is untouched on A; new commits on it reach B's copy under the qualified id.
    assert files_of(a, "admin/same") == {".gitattributes", "f.txt"}
    sha = api(a).upload_file(path_or_fileobj=b"a2", path_in_repo="a2.txt", repo_id="admin/same")
    wait_until(lambda: api(b).model_info("admin.a/same").sha == sha.oid)
    assert api(b).model_info("admin/same").sha != sha.oid


def test_a_node_peering_with_both_sees_both_each_with_its_home(spawn: Spawn) -> None:
    a, b, c = spawn("a"), spawn("b"), spawn("c")
    from_a, from_b = make_same(a, b"from a"), make_same(b, b"from b")
    c.add_peer(a)
    wait_until(lambda: api(c).repo_exists("admin/same"))
    c.add_peer(b)
    wait_until(lambda: api(c).repo_exists("admin.b/same"))
    assert (api(c).model_info("admin/same").sha, home_of(c, "admin/same")) == (from_a, "a")
    assert (api(c).model_info("admin.b/same").sha, home_of(c, "admin.b/same")) == (from_b, "b")
    # Search and the Hub listing name each one's home.
    both = {("admin/same", "a"), ("admin.b/same", "b")}
    with c.client() as http:
        hits = http.get("/v1/search", params={"q": "same"}).json()["results"]
        listed = http.get("/api/models", params={"search": "same"}).json()
    assert {(h["id"], h["home"]) for h in hits} == both
    assert {(item["id"], item["home"]) for item in listed} == both


def test_a_restored_home_of_a_repo_held_under_its_qualified_id_is_followed(
    spawn: Spawn, tmp_path: Path
) -> None:
    """A's `admin/same` is `admin.a/same` on B. A is restored from a backup and commits again:
    B's copy goes back to A's history under the qualified id (its refs rolled back, not
    deleted), and B's own `admin/same` is untouched."""
    import shutil

    a, b = spawn("a"), spawn("b")
    backed_up = make_same(a, b"from a")
    ours = make_same(b, b"from b")
    b.add_peer(a)
    wait_until(lambda: api(b).repo_exists("admin.a/same"))
    a.stop()
    shutil.copytree(a.data_dir, tmp_path / "backup")
    a.start()
    lost = api(a).upload_file(
        path_or_fileobj=b"lost", path_in_repo="lost.txt", repo_id="admin/same"
    )
    wait_until(lambda: api(b).model_info("admin.a/same").sha == lost.oid)
    a.stop()
    shutil.rmtree(a.data_dir)
    shutil.copytree(tmp_path / "backup", a.data_dir)
    a.start()
    # Before A commits again: B takes A's restored head back under the qualified id.
    wait_until(lambda: api(b).model_info("admin.a/same").sha == backed_up, timeout=10)
    new = api(a).upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id="admin/same")
    wait_until(lambda: api(b).model_info("admin.a/same").sha == new.oid, timeout=10)
    assert files_of(b, "admin.a/same") == {".gitattributes", "f.txt", "new.txt"}
    assert api(b).model_info("admin/same").sha == ours
    assert files_of(b, "admin/same") == {".gitattributes", "f.txt"}
    # The lost commit is kept on B (recoverable by A), and the collision still shows.
    wait_until(lambda: b.peers()[0]["state"] == "diverged")
    (peer,) = b.peers()
    assert peer["set_aside_entries"] >= 1 and peer["collisions"] == 1, peer
