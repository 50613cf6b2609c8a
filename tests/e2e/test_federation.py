"""Three real node processes replicating each other through their change feeds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.faultproxy import Fault, FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def head_of(node: NodeProcess, repo: str) -> str | None:
    try:
        return api(node).model_info(repo).sha
    except HfHubHTTPError:
        return None


def blobs_intact(node: NodeProcess) -> bool:
    root = node.data_dir / "store" / "blobs" / "blake3"
    files = [p for p in root.rglob("*") if p.is_file()]
    return all(blake3.blake3(p.read_bytes()).hexdigest() == p.name for p in files)


def has_blob(node: NodeProcess, digest: str) -> bool:
    with node.client() as http:
        return http.head(f"/v1/blobs/{digest}").status_code == 200


def feed_identities(node: NodeProcess) -> list[tuple[str, int]]:
    with node.client() as http:
        page = http.get("/v1/sync/changes", params={"since": 0, "limit": 5000}).json()
    return [(e["origin"], e["origin_serial"]) for e in page["entries"]]


def test_upload_on_a_reaches_b_and_c_through_a_chain(spawn: Spawn, tmp_path: Path) -> None:
    a, b, c = spawn("a"), spawn("b"), spawn("c")
    b.add_peer(a)
    c.add_peer(b)  # C never talks to A: A -> B -> C
    data = os.urandom(3 * 1024 * 1024)
    api(a).create_repo("admin/chain")
    sha = (
        api(a)
        .upload_file(path_or_fileobj=data, path_in_repo="m.safetensors", repo_id="admin/chain")
        .oid
    )
    api(a).create_tag("admin/chain", tag="v1")
    for replica in (b, c):
        wait_until(lambda r=replica: head_of(r, "admin/chain") == sha)
        # The tag is a later entry of the feed than the commit: it may arrive a batch later.
        wait_until(lambda r=replica: bool(api(r).list_repo_refs("admin/chain").tags))
        assert [t.name for t in api(replica).list_repo_refs("admin/chain").tags] == ["v1"]
        local = hf_hub_download(
            "admin/chain",
            "m.safetensors",
            revision="v1",
            cache_dir=tmp_path / replica.name,
            endpoint=replica.url,
        )
        assert Path(local).read_bytes() == data
    commits = [c_.commit_id for c_ in api(a).list_repo_commits("admin/chain")]
    assert [c_.commit_id for c_ in api(c).list_repo_commits("admin/chain")] == commits
    c.add_peer(a)  # a diamond: C now hears every entry from A directly and through B
    sha = (
        api(a)
        .upload_file(path_or_fileobj=b"again", path_in_repo="again.txt", repo_id="admin/chain")
        .oid
    )
    wait_until(lambda: head_of(c, "admin/chain") == sha)
    wait_until(lambda: all(p["lag_serials"] == 0 for p in c.peers()))
    identities = feed_identities(c)
    assert len(set(identities)) == len(identities)  # each entry applied once


def test_replica_killed_mid_replication_converges_after_restart(spawn: Spawn) -> None:
    a = spawn("a")
    api(a).create_repo("admin/big")
    for i in range(4):
        api(a).upload_file(
            path_or_fileobj=os.urandom(24 * 1024 * 1024),
            path_in_repo=f"part{i}.safetensors",
            repo_id="admin/big",
        )
    for i in range(30):
        api(a).upload_file(
            path_or_fileobj=f"{i}".encode(), path_in_repo=f"n/{i}.txt", repo_id="admin/big"
        )
    b = spawn("b")
    b.add_peer(a)
    wait_until(lambda: any(p.is_file() for p in (b.data_dir / "store").rglob("*")), 30, 0.01)
    b.kill()
    b = spawn("b")
    wait_until(lambda: head_of(b, "admin/big") == head_of(a, "admin/big"), 60)
    wanted = {f.rfilename: f for f in api(a).model_info("admin/big").siblings or []}
    got = {f.rfilename: f for f in api(b).model_info("admin/big").siblings or []}
    assert got.keys() == wanted.keys()
    blob_dir = b.data_dir / "store" / "blobs"
    wait_until(lambda: len([p for p in blob_dir.rglob("*") if p.is_file()]) >= 35, 60)
    assert blobs_intact(b)
    identities = feed_identities(b)
    assert len(identities) == len(set(identities))
    assert identities == [i for i in feed_identities(a)]  # same entries, same order


def test_peer_down_during_100_commits_catches_up_and_recovers(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    b.add_peer(a)
    b_seen_by_a = a.add_peer(b)  # A watches B too, so A reports B's state

    def state() -> object:
        return next(p["state"] for p in a.peers() if p["id"] == b_seen_by_a)

    api(a).create_repo("admin/busy")
    wait_until(lambda: head_of(b, "admin/busy") is not None)
    wait_until(lambda: state() == "up")
    b.kill()
    wait_until(lambda: state() == "down", 30)
    for i in range(100):
        api(a).upload_file(
            path_or_fileobj=f"{i}".encode(),
            path_in_repo=f"{i}.txt",
            repo_id="admin/busy",
            commit_message=f"c{i}",
        )
    b = spawn("b", port=b.port)  # back at the same address, same data
    wait_until(lambda: head_of(b, "admin/busy") == head_of(a, "admin/busy"), 60)
    wait_until(lambda: state() == "up", 30)
    assert len(api(b).list_repo_commits("admin/busy")) == 101


def test_deletes_replicate_and_writes_to_a_replica_are_refused(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    b.add_peer(a)
    shared = os.urandom(100_000)
    api(a).create_repo("admin/keep")
    api(a).create_repo("admin/gone")
    api(a).upload_file(path_or_fileobj=shared, path_in_repo="w.bin", repo_id="admin/keep")
    api(a).upload_file(path_or_fileobj=shared, path_in_repo="w.bin", repo_id="admin/gone")
    api(a).upload_file(path_or_fileobj=b"bye", path_in_repo="old.txt", repo_id="admin/keep")
    wait_until(
        lambda: api(b).file_exists("admin/keep", "old.txt") and api(b).repo_exists("admin/gone")
    )
    before = head_of(b, "admin/keep")
    with pytest.raises(HfHubHTTPError, match=f"home is node a at {a.url}"):
        api(b).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="admin/keep")
    assert head_of(b, "admin/keep") == before
    api(a).delete_file("old.txt", repo_id="admin/keep")
    api(a).delete_repo("admin/gone")
    wait_until(
        lambda: (
            not api(b).repo_exists("admin/gone") and not api(b).file_exists("admin/keep", "old.txt")
        )
    )
    digest = blake3.blake3(shared).hexdigest()
    # Still referenced by admin/keep: it stays (bytes follow the metadata in the background).
    wait_until(lambda: has_blob(b, digest))


def test_private_repo_never_reaches_a_peer_without_permission(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    b.add_peer(a, token=None)  # anonymous: may see public entries only
    api(a).create_repo("admin/secret", private=True)
    api(a).upload_file(path_or_fileobj=b"classified", path_in_repo="s.txt", repo_id="admin/secret")
    api(a).create_repo("admin/open")
    wait_until(lambda: api(b).repo_exists("admin/open"))
    assert not api(b).repo_exists("admin/secret")
    assert "admin/secret" not in {m.id for m in api(b).list_models()}
    with b.client() as http:
        page = http.get("/v1/sync/changes", params={"since": 0}).json()
        digest = blake3.blake3(b"classified").hexdigest()
        assert http.get(f"/v1/blobs/{digest}").status_code == 404
    assert all(e["repo"] != "model/admin/secret" for e in page["entries"])


def test_corrupt_source_is_rejected_and_another_source_serves(spawn: Spawn, tmp_path: Path) -> None:
    a, b, c = spawn("a"), spawn("b"), spawn("c")
    b.add_peer(a)
    data = os.urandom(1024 * 1024)
    api(a).create_repo("admin/bits")
    api(a).upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id="admin/bits")
    digest = blake3.blake3(data).hexdigest()
    wait_until(lambda: has_blob(b, digest))
    proxy = FaultProxy(a.port)
    proxy.inject(Fault(corrupt_at=300_000, times=10_000))
    try:
        bad = c.add_peer(proxy.url, blobs="lazy")  # tried first: it was added first
        c.add_peer(b, blobs="lazy")
        wait_until(lambda: api(c).file_exists("admin/bits", "w.safetensors"))
        local = hf_hub_download(
            "admin/bits", "w.safetensors", cache_dir=tmp_path / "c", endpoint=c.url
        )
        assert Path(local).read_bytes() == data
        peers = {p["id"]: p for p in c.peers()}
        assert peers[bad]["bad_blobs"] >= 1 and "wrong bytes" in str(peers[bad]["last_error"])
        assert blobs_intact(c)
    finally:
        proxy.close()


def test_misbehaving_peers_do_not_stop_replication_from_good_ones(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    garbage = FaultProxy(a.port)
    garbage.inject(
        Fault(reply=b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{not json", times=10_000)
    )
    failing = FaultProxy(a.port)
    failing.inject(Fault(reply=b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", times=10_000))
    hanging = FaultProxy(a.port)
    hanging.inject(Fault(delay=3600, times=10_000))
    try:
        bad = [b.add_peer(p.url) for p in (garbage, failing, hanging)]
        b.add_peer(a)
        api(a).create_repo("admin/robust")
        sha = (
            api(a)
            .upload_file(path_or_fileobj=b"ok", path_in_repo="ok.txt", repo_id="admin/robust")
            .oid
        )
        wait_until(lambda: head_of(b, "admin/robust") == sha)

        def all_bad_seen() -> bool:
            peers = {p["id"]: p for p in b.peers()}
            return all(peers[i]["state"] in ("degraded", "down") for i in bad)

        wait_until(all_bad_seen, 60)
        api(a).upload_file(
            path_or_fileobj=b"still", path_in_repo="more.txt", repo_id="admin/robust"
        )
        wait_until(lambda: api(b).file_exists("admin/robust", "more.txt"))
    finally:
        for proxy in (garbage, failing, hanging):
            proxy.close()


def test_a_peer_replaced_behind_the_same_url_is_not_followed(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    peer_id = b.add_peer(a)
    api(a).create_repo("admin/original")
    wait_until(lambda: api(b).repo_exists("admin/original"))
    a.kill()
    impostor = spawn("a2", port=a.port)  # a fresh data dir answering at the same URL
    api(impostor).create_repo("admin/forged")

    def refused() -> bool:
        peer = next(p for p in b.peers() if p["id"] == peer_id)
        return "PeerMismatch" in str(peer["last_error"])

    wait_until(refused, 30)
    assert not api(b).repo_exists("admin/forged")
    assert api(b).repo_exists("admin/original")
    # The impostor answers probes as a healthy node would, but every pull is refused: for the
    # next 3 s (6 probe intervals, twice what makes a peer up) the peer is never shown `up`.
    seen = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        peer = next(p for p in b.peers() if p["id"] == peer_id)
        seen.add(peer["state"])
        assert peer["last_error"], peer
        time.sleep(0.05)
    assert "up" not in seen and seen <= {"degraded", "down"}, seen
    # The real A back at its URL: up again, and the error that was is cleared.
    impostor.kill()
    a.start()
    api(a).create_repo("admin/after")
    wait_until(lambda: api(b).repo_exists("admin/after"), 30)

    def healthy() -> bool:
        peer = next(p for p in b.peers() if p["id"] == peer_id)
        return peer["state"] == "up" and peer["last_error"] is None

    wait_until(healthy, 30)
    peer = next(p for p in b.peers() if p["id"] == peer_id)
    assert peer["last_error_at"] is None and peer["lag_serials"] == 0, peer
