"""Eager blob catch-up between real node processes: ranged fetches straight into the blob
store, resumed after a cut, verified before visible, with progress in /v1/peers."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing

import blake3
import pytest
from huggingface_hub import HfApi

from sync.blobstream import PARALLEL_MIN
from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.faultproxy import Fault, FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]
MIB = 1024 * 1024


def upload(node: NodeProcess, repo: str, files: dict[str, bytes]) -> list[str]:
    api = HfApi(endpoint=node.url, token=TOKEN)
    api.create_repo(repo)
    for name, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=repo)
    return [blake3.blake3(data).hexdigest() for data in files.values()]


def stored(node: NodeProcess) -> dict[str, int]:
    """The blobs visible in the node's store, each checked against its name."""
    root = node.data_dir / "store" / "blobs" / "blake3"
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            assert blake3.blake3(path.read_bytes()).hexdigest() == path.name, path
            found[path.name] = path.stat().st_size
    return found


def test_eager_catch_up_stores_every_blob_verified_and_reports_progress(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    large = PARALLEL_MIN + 8 * MIB  # taken in parallel ranges
    files = {f"w{i}.safetensors": os.urandom(n) for i, n in enumerate([MIB, 5 * MIB, large])}
    digests = upload(a, "admin/weights", files)
    b.add_peer(a)
    wait_until(lambda: set(digests) <= set(stored(b)), 120, 0.2)
    assert {d: stored(b)[d] for d in digests} == {
        blake3.blake3(v).hexdigest(): len(v) for v in files.values()
    }

    def settled() -> bool:
        catch_up = b.peers()[0]["catch_up"]
        return bool(catch_up["blobs_fetched"] == catch_up["blobs_wanted"])

    wait_until(settled, 30)
    catch_up = b.peers()[0]["catch_up"]
    assert catch_up["blobs_wanted"] >= len(files)
    assert catch_up["bytes_wanted"] >= sum(len(v) for v in files.values())
    assert catch_up["bytes_fetched"] == catch_up["bytes_wanted"]
    assert catch_up["bytes_eta_seconds"] == 0
    assert catch_up["bytes_per_second"] >= 0 and catch_up["entries_per_second"] >= 0
    with b.client() as http:
        page = http.get("/status").text
    assert "catch-up" in page and "blobs " in page
    # SHA-256 of a large blob is recorded once it is visible (the LFS oid it is looked up by).
    wanted = {blake3.blake3(v).hexdigest(): hashlib.sha256(v).hexdigest() for v in files.values()}
    wait_until(lambda: recorded_sha256(b) == wanted, 60, 0.2)


def recorded_sha256(node: NodeProcess) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{node.data_dir / 'modelyard.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT blake3, sha256 FROM blob WHERE size >= ?", (MIB,)).fetchall()
    return dict(rows)


def test_a_cut_blob_fetch_resumes_and_a_killed_replica_restarts_clean(spawn: Spawn) -> None:
    a, b = spawn("a"), spawn("b")
    data = os.urandom(40 * MIB)
    (digest,) = upload(a, "admin/cut", {"w.safetensors": data})
    proxy = FaultProxy(a.port)
    # Every connection is cut after 6 MiB of its answer: the blob arrives only by resuming.
    proxy.inject(Fault(cut_after=6 * MIB, times=1_000_000))
    try:
        b.add_peer(proxy.url)
        log = b.data_dir.parent / "b.log"
        wait_until(lambda: "kept for resuming" in log.read_text(), 60, 0.1)
        assert digest not in stored(b)  # nothing partial is visible
        b.kill()  # mid-catch-up: what it kept in memory is lost, its upload file left over
        b.start()
        wait_until(lambda: digest in stored(b), 120, 0.2)
        assert stored(b)[digest] == len(data)
        with b.client() as http:
            served = http.get(f"/v1/blobs/{digest}")
        assert served.status_code == 200 and served.content == data
        resumed = [line for line in log.read_text().splitlines() if "kept for resuming" in line]
        assert len(resumed) >= 2  # before and after the restart: progress came in pieces
    finally:
        proxy.close()


def test_a_replica_killed_mid_catch_up_converges_and_hashes_what_the_kill_left(
    spawn: Spawn,
) -> None:
    """SIGKILL while one blob is stored (its SHA-256 still to come: the fill waits for the
    fetches) and another is half-way: after the restart every blob is stored once, verified,
    nothing partial left over, and the first gets its SHA-256 from the startup sweep."""
    a, b = spawn("a"), spawn("b")
    files = {"done.safetensors": os.urandom(16 * MIB), "half.safetensors": os.urandom(40 * MIB)}
    done, half = upload(a, "admin/kill", files)
    proxy = FaultProxy(a.port)
    # Any answer of more than 30 MiB is held there: the 16 MiB blob arrives, the 40 MiB one not.
    proxy.inject(Fault(pause_after=30 * MIB, pause=120, times=1_000_000))
    try:
        b.add_peer(proxy.url)
        wait_until(lambda: done in recorded_sha256(b) and proxy.paused.is_set(), 60, 0.1)
        assert recorded_sha256(b)[done] == ""  # stored, SHA-256 not filled yet
        assert half not in stored(b)  # nothing partial is visible
        b.kill()
        proxy.inject(Fault(times=0))
        b.start()
        expected = {
            blake3.blake3(v).hexdigest(): hashlib.sha256(v).hexdigest() for v in files.values()
        }
        wait_until(lambda: recorded_sha256(b) == expected, 120, 0.2)
        assert {d: stored(b)[d] for d in (done, half)} == {done: 16 * MIB, half: 40 * MIB}
        assert not list((b.data_dir / "store" / "uploads").iterdir())  # no leftover copy
        assert "sha256 sweep queued blobs=1" in (b.data_dir.parent / "b.log").read_text()
        with b.client() as http:
            for digest, data in zip((done, half), files.values(), strict=True):
                assert http.get(f"/v1/blobs/{digest}").content == data
    finally:
        proxy.close()
