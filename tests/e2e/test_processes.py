"""Two processes of one node sharing PostgreSQL and S3: both take uploads and downloads under a
bounded load, a peer pulling the change feed sees every change exactly once, and when the
process running a background job is SIGKILLed mid-job, the other one finishes it."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3
import httpx
import psycopg
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from registry.domain.changes import MIRRORED_KINDS
from tests.conftest import postgres_database_for
from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.tools import require_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
LEASE_SECONDS = 3


@pytest.fixture
def one_node(
    spawn: Callable[..., NodeProcess], tmp_path: Path, s3_bucket: str
) -> Iterator[tuple[NodeProcess, NodeProcess, str]]:
    """Node "a" as two processes on one Postgres database and one bucket; and the DB URL."""
    require_postgres()
    database = postgres_database_for(tmp_path / "a")
    env = {
        "MODELYARD_DATABASE_URL": database,
        "MODELYARD_BLOB_STORE": f"s3://{s3_bucket}/a",
        "MODELYARD_LEASE_SECONDS": str(LEASE_SECONDS),
        "MODELYARD_MIRROR__INTERVAL": "0.1",
    }
    first = spawn("a1", node_id="a", env=env)
    second = spawn("a2", node_id="a", env=env)
    yield first, second, database.replace("postgresql+psycopg://", "postgresql://")


def feed(node: NodeProcess, since: int = 0) -> list[dict[str, Any]]:
    """Every feed entry after `since`, paged as a peer pages it."""
    entries: list[dict[str, Any]] = []
    with node.client() as http:
        while True:
            page = http.get("/v1/sync/changes", params={"since": since, "limit": 50}).json()
            entries += page["entries"]
            if page["last_serial"] == since:
                return entries
            since = page["last_serial"]


def lease_holder(database: str, name: str) -> int | None:
    """The pid of the process holding lease `name` (holders are node/host/pid/random)."""
    with psycopg.connect(database) as db:
        row = db.execute(
            "SELECT holder FROM lease WHERE name = %s AND expires_ms > %s",
            (name, int(time.time() * 1000)),
        ).fetchone()
    return int(row[0].split("/")[2]) if row else None


def test_two_processes_share_a_node_under_load_and_the_feed_has_each_change_once(
    one_node: tuple[NodeProcess, NodeProcess, str], spawn: Callable[..., NodeProcess]
) -> None:
    first, second, _ = one_node
    peer = spawn("p")
    peer.add_peer(first)
    processes = [first, second]
    made: dict[tuple[str, str], str] = {}  # (repo, path) -> sha256 of what was uploaded
    commits: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        """Create a repo on one process, commit to it on both, read each commit back from the
        process that did not take it (an upload is visible everywhere at once)."""
        repo = f"admin/load-{w}"
        HfApi(endpoint=processes[w % 2].url, token=TOKEN).create_repo(repo)
        for i in range(6):
            into, back = processes[(w + i) % 2], processes[(w + i + 1) % 2]
            data = os.urandom(random.choice([3_000, 300_000, 3_000_000]))
            path = f"part-{i}.safetensors" if len(data) > 10_000 else f"note-{i}.txt"
            info = HfApi(endpoint=into.url, token=TOKEN).create_commit(
                repo, [CommitOperationAdd(path, data)], commit_message=f"w{w} c{i}"
            )
            local = hf_hub_download(
                repo, path, revision="main", endpoint=back.url, token=TOKEN, cache_dir=cache
            )
            got = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            with lock:
                commits.append(info.oid)
                made[(repo, path)] = hashlib.sha256(data).hexdigest()
                if got != made[(repo, path)]:
                    errors.append(f"{repo}/{path}: other process served other bytes")

    def reader(stop: threading.Event) -> int:
        """Metadata calls and resolve HEADs on both processes while the writers write."""
        done = 0
        with httpx.Client(timeout=30) as http:
            while not stop.is_set() and done < 2000:
                node = random.choice(processes)
                response = http.get(f"{node.url}/api/models", params={"author": "admin"})
                if response.status_code != 200:
                    errors.append(f"listing on {node.name}: {response.status_code}")
                for model in response.json()[:3]:
                    info = http.get(f"{node.url}/api/models/{model['id']}")
                    if info.status_code != 200:
                        errors.append(f"info {model['id']}: {info.status_code}")
                done += 1
        return done

    cache = first.data_dir.parent / "hf-cache"
    stop = threading.Event()
    with ThreadPoolExecutor(6) as pool:
        readers = [pool.submit(reader, stop) for _ in range(2)]
        for future in [pool.submit(writer, w) for w in range(4)]:
            future.result()
        stop.set()
        assert all(r.result() > 0 for r in readers)
    assert errors == []

    # The feed, paged from either process, is gap-free and holds each commit exactly once.
    for node in processes:
        entries = feed(node)
        serials = [e["serial"] for e in entries]
        assert serials == list(range(1, len(serials) + 1))
        heads = [e["body"]["commit"] for e in entries if e["kind"] == "ref.set"]
        assert sorted(c for c in heads if c in commits) == sorted(commits)

    # The peer, pulling from one process, applied every change of node "a" exactly once.
    head = len(feed(first))
    wait_until(lambda: any(p["cursor"] == head for p in peer.peers()), timeout=60)
    learned = [e for e in feed(peer) if e["origin"] == "a"]
    assert sorted(e["origin_serial"] for e in learned) == list(range(1, head + 1))
    for (repo, path), sha in made.items():
        local = hf_hub_download(repo, path, endpoint=peer.url, token=TOKEN, cache_dir=cache / "p")
        assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == sha


def test_killed_process_mid_push_the_other_finishes_the_outbox(
    one_node: tuple[NodeProcess, NodeProcess, str], s3_bucket: str
) -> None:
    first, second, database = one_node
    with first.client() as http:
        body = {"name": "copy", "kind": "s3", "url": f"s3://{s3_bucket}/mirror"}
        assert http.post("/v1/mirrors", json=body).status_code == 201
    api = HfApi(endpoint=second.url, token=TOKEN)
    api.create_repo("admin/busy")
    for i in range(30):
        api.create_commit(
            "admin/busy",
            [CommitOperationAdd(f"shard-{i}.bin", os.urandom(2_000_000))],
            commit_message=f"c{i}",
        )

    def status() -> dict[str, Any]:
        with second.client() as http:
            return dict(http.get("/v1/mirrors").json()[0])

    # Kill whichever process pushes, once it has pushed some and has more to go.
    wait_until(lambda: status()["pushed"] >= 2, timeout=60, interval=0.01)
    holder = lease_holder(database, "mirrors")
    victim, survivor = (first, second) if holder == first.pid else (second, first)
    assert holder == victim.pid
    victim.kill()
    backlog = survivor_status(survivor)["backlog"]  # the victim may be the one asked before
    assert backlog > 0, "the job was done before the kill: nothing was shown"

    wait_until(lambda: survivor_status(survivor)["backlog"] == 0, timeout=90)
    # The survivor holds the job (a renewal may lapse for a moment on a loaded machine: then
    # its worker claims the lease again on its next pass).
    wait_until(lambda: lease_holder(database, "mirrors") == survivor.pid, timeout=30)
    pushable = [e for e in feed(survivor) if e["kind"] in MIRRORED_KINDS]
    assert survivor_status(survivor)["pushed"] == len(pushable)  # each change pushed once
    with survivor.client() as http:
        head = http.get("/api/models/admin/busy").json()["sha"]
    manifest = _s3_json(s3_bucket, "mirror/repos/model/admin/busy/refs/heads/main.json")
    assert manifest["commit"] == head


def survivor_status(node: NodeProcess) -> dict[str, Any]:
    with node.client() as http:
        return dict(http.get("/v1/mirrors").json()[0])


def _s3_json(bucket: str, key: str) -> dict[str, Any]:
    import json

    import boto3

    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return dict(json.loads(body))


def test_killed_process_mid_pull_the_other_finishes_replication(
    one_node: tuple[NodeProcess, NodeProcess, str], spawn: Callable[..., NodeProcess]
) -> None:
    first, second, database = one_node
    source = spawn("p")
    api = HfApi(endpoint=source.url, token=TOKEN)
    api.create_repo("admin/big")
    blobs: dict[str, bytes] = {}  # blake3 -> bytes, of every file on the peer
    for i in range(30):
        data = os.urandom(4_000_000)
        blobs[blake3.blake3(data).hexdigest()] = data
        api.create_commit(
            "admin/big", [CommitOperationAdd(f"w-{i}.bin", data)], commit_message=f"c{i}"
        )
    peer_id = first.add_peer(source)  # stored in the shared database: both processes see it

    def present(node: NodeProcess) -> set[str]:
        with httpx.Client(base_url=node.url, timeout=30) as http:
            return {h for h in blobs if http.head(f"/v1/blobs/{h}").status_code in (200, 302)}

    # Kill whichever process pulls, once it has applied some of the feed.
    wait_until(lambda: any(p["cursor"] > 0 for p in second.peers()), timeout=60, interval=0.01)
    holder = lease_holder(database, f"sync:{peer_id}")
    victim, survivor = (first, second) if holder == first.pid else (second, first)
    assert holder == victim.pid
    victim.kill()
    cursor = survivor.peers()[0]["cursor"]
    missing = set(blobs) - present(survivor)
    assert cursor < len(feed(source)) or missing, "the job was done before the kill"

    # The survivor takes the leases over once they run out and finishes: every entry of the
    # peer applied once, every blob fetched (eagerly, not pulled through by a download).
    head = len(feed(source))
    wait_until(lambda: survivor.peers()[0]["cursor"] == head, timeout=90)
    wait_until(lambda: present(survivor) == set(blobs), timeout=90, interval=0.5)
    # The work can be done before the puller's lease changes hands: with the feed applied before
    # the kill, the blobs are fetched under the backfill lease while the dead process's sync
    # lease has yet to run out (or has run out, and the survivor's next try is up to a second
    # away). Wait for the hand-over rather than look at one instant.
    wait_until(lambda: lease_holder(database, f"sync:{peer_id}") == survivor.pid, timeout=30)
    learned = [e for e in feed(survivor) if e["origin"] == "p"]
    assert sorted(e["origin_serial"] for e in learned) == list(range(1, head + 1))
    with httpx.Client(base_url=survivor.url, timeout=60, follow_redirects=True) as http:
        for digest, data in blobs.items():
            assert http.get(f"/v1/blobs/{digest}").content == data


def test_a_busy_port_fails_before_the_node_opens_or_says_it_serves(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        data_dir = tmp_path / "busy"
        run = subprocess.run(
            [sys.executable, "-m", "registry", "serve", "--port", str(port)]
            + ["--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MODELYARD_ADMIN_TOKEN": TOKEN},
        )
    assert run.returncode == 1, run
    assert f"Cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "in use" in run.stderr.lower() and "Traceback" not in run.stderr
    assert " on http://" not in run.stderr + run.stdout  # no "serving" banner
    assert not data_dir.exists()  # nothing opened or created
