"""Scrubbing: `modelyard verify` finds blobs whose stored bytes rotted or vanished behind a
running node's back, the node never serves them, and they are repaired from a peer; with no
good copy anywhere the blob is reported, stays quarantined, and the exit status says so."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import blake3
import httpx
import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi

from registry.cli import cli
from registry.domain.digest import Digest
from registry.metadata.db import Database
from registry.settings import Settings
from tests.blobs import (
    corrupt_stored_blob,
    delete_stored_blob,
    set_aside_files,
    stored_bytes,
)
from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode
from tests.e2e.nodeproc import wait_for

REPO = "admin/weights"
PATH = "w.safetensors"


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def upload(node: RunningNode, files: dict[str, bytes]) -> list[Digest]:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo(REPO, exist_ok=True)
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=REPO)
    return [Digest(blake3.blake3(data).hexdigest()) for data in files.values()]


def env_of(settings: Settings) -> dict[str, str]:
    """What `modelyard serve` was given for this node, as the variables `verify` reads."""
    given = {
        "MODELYARD_DATA_DIR": str(settings.data_dir),
        "MODELYARD_DATABASE_URL": settings.database_url,
        "MODELYARD_BLOB_STORE": settings.blob_store,
        "MODELYARD_BLOB_STORE_ENDPOINT": settings.blob_store_endpoint,
    }
    return {key: value for key, value in given.items() if value}


def verify(node: RunningNode, *args: str) -> tuple[int, dict[str, Any]]:
    """`modelyard verify --json` on the node's data while it runs; (exit status, result)."""
    result = CliRunner().invoke(cli, ["verify", "--json", *args], env=env_of(node.settings))
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def error_code(response: httpx.Response) -> str | None:
    code: str | None = response.headers.get("X-Error-Code")
    return code


def scrub_status(node: RunningNode) -> dict[str, Any]:
    with node.client() as http:
        scrub: dict[str, Any] = http.get("/v1/status").json()["scrub"]
    return scrub


def metric(node: RunningNode, name: str) -> float:
    with node.client() as http:
        lines = http.get("/metrics").text.splitlines()
    return float(next(line.split()[-1] for line in lines if line.startswith(f"{name} ")))


@pytest.fixture
def pair(start_node: Callable[..., RunningNode]) -> tuple[RunningNode, RunningNode]:
    """Node a, and node b replicating it eagerly."""
    a = start_node("a")
    b = start_node("b", sync=FAST_SYNC)
    with b.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": a.url, "token": ADMIN_TOKEN, "blobs": "eager"})
    assert added.status_code == 201, added.text
    return a, b


def replicate(b: RunningNode, data: bytes) -> Digest:
    digest = Digest(blake3.blake3(data).hexdigest())

    def stored() -> bool:
        # Served, and recorded: a fetched blob's file is published a moment before its record
        # (the fetch runs at low priority), and the scrub walks the records.
        with b.client(ADMIN_TOKEN) as http:
            if http.head(f"/v1/blobs/{digest.hex}").status_code != 200:
                return False
        with b.runtime.db.read() as tx:
            return digest in tx.blobs.recorded([digest])

    wait_for(stored, 60, "the blob replicated to b", interval=0.1)
    return digest


def test_verify_repairs_a_blob_corrupted_on_disk_from_a_peer(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = pair
    data = payload(300_000)
    upload(a, {PATH: data})
    digest = replicate(b, data)
    corrupt_stored_blob(b.settings, digest)

    code, run = verify(b)

    assert code == 0, run
    assert (run["corrupt"], run["missing"], run["repaired"], run["unrepaired"]) == (1, 0, 1, 0)
    assert run["complete"] and run["held"] == []
    assert stored_bytes(b.settings, digest) == data
    assert set_aside_files(b.settings) == set()  # the corrupt copy goes once repaired
    with b.client(ADMIN_TOKEN) as http:
        assert http.get(f"/v1/blobs/{digest.hex}").content == data
        assert http.get(f"/{REPO}/resolve/main/{PATH}").content == data
    status = scrub_status(b)
    last_run = status["last_run"]
    assert last_run["by"] == "verify"
    assert (last_run["corrupt"], last_run["repaired"]) == (1, 1)
    assert status["quarantined"] == 0 and status["unrepaired"] == []
    assert status["totals"] == {
        "checked": run["checked"],
        "checked_bytes": run["checked_bytes"],
        "corrupt": 1,
        "missing": 0,
        "repaired": 1,
        "unrepairable": 0,
    }
    assert metric(b, "modelyard_scrub_corrupt_blobs_total") == 1
    assert metric(b, "modelyard_scrub_repaired_blobs_total") == 1
    assert metric(b, "modelyard_scrub_checked_blobs_total") == run["checked"]
    assert metric(b, "modelyard_scrub_quarantined_blobs") == 0


def test_verify_repairs_a_missing_blob_from_a_peer(pair: tuple[RunningNode, RunningNode]) -> None:
    a, b = pair
    data = payload(200_000, seed=1)
    upload(a, {PATH: data})
    digest = replicate(b, data)
    delete_stored_blob(b.settings, digest)

    code, run = verify(b)

    assert code == 0, run
    assert (run["corrupt"], run["missing"], run["repaired"], run["unrepaired"]) == (0, 1, 1, 0)
    assert stored_bytes(b.settings, digest) == data
    assert metric(b, "modelyard_scrub_missing_blobs_total") == 1


def test_a_quarantined_blob_is_never_served_and_a_download_from_the_peer_repairs_it(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = pair
    data = payload(300_000, seed=2)
    upload(a, {PATH: data})
    digest = replicate(b, data)
    corrupt = corrupt_stored_blob(b.settings, digest)

    code, run = verify(b, "--no-repair")

    assert code == 1 and (run["corrupt"], run["repaired"], run["unrepaired"]) == (1, 0, 1)
    assert run["held"] == [
        {
            "blake3": digest.hex,
            "size": len(data),
            "reason": "corrupt",
            "detail": f"hashes to blake3:{blake3.blake3(corrupt).hexdigest()}",
            "found_ms": run["held"][0]["found_ms"],
            "attempts": 0,
            "last_attempt_ms": None,
            "last_error": None,
        }
    ]
    assert set_aside_files(b.settings) == {f"quarantine/{digest.hex}"}
    with b.client(ADMIN_TOKEN) as http:
        held = http.get(f"/v1/blobs/{digest.hex}")  # the running node stops at once
        assert held.status_code == 503 and error_code(held) == "BlobQuarantined"
        assert corrupt not in held.content
        # A download by path is served from the peer, verified; storing it lifts the hold.
        assert http.get(f"/{REPO}/resolve/main/{PATH}").content == data
        assert http.get(f"/v1/blobs/{digest.hex}").content == data
    assert scrub_status(b)["quarantined"] == 0
    assert stored_bytes(b.settings, digest) == data
    assert set_aside_files(b.settings) == set()


@pytest.mark.parametrize("peer_copy", ["missing", "corrupt"])
def test_verify_reports_a_blob_no_peer_has_and_the_node_never_serves_it(
    pair: tuple[RunningNode, RunningNode], peer_copy: str
) -> None:
    a, b = pair
    data = payload(300_000, seed=3)
    upload(a, {PATH: data})
    digest = replicate(b, data)
    corrupt = corrupt_stored_blob(b.settings, digest)
    if peer_copy == "missing":
        delete_stored_blob(a.settings, digest)
    else:  # a serves wrong bytes: b must refuse them
        corrupt_stored_blob(a.settings, digest)

    code, run = verify(b)

    assert code == 1 and (run["corrupt"], run["repaired"], run["unrepaired"]) == (1, 0, 1)
    held = run["held"]
    assert held[0]["blake3"] == digest.hex
    assert held[0]["attempts"] == 1 and "no peer or mirror" in held[0]["last_error"]
    with b.client(ADMIN_TOKEN) as http:
        native = http.get(f"/v1/blobs/{digest.hex}")
        assert native.status_code == 503 and error_code(native) == "BlobQuarantined"
        if peer_copy == "missing":
            by_path = http.get(f"/{REPO}/resolve/main/{PATH}")
            assert by_path.status_code == 503 and error_code(by_path) == "BlobQuarantined"
            assert corrupt not in by_path.content
    status = scrub_status(b)
    assert status["quarantined"] == 1
    assert [h["blake3"] for h in status["unrepaired"]] == [digest.hex]
    assert metric(b, "modelyard_scrub_quarantined_blobs") == 1
    assert metric(b, "modelyard_scrub_unrepairable_blobs_total") == 1
    with b.client() as http:
        page = http.get("/status").text
    assert '<b class="held">1</b> quarantined' in page and f"<td>{digest.hex[:16]}</td>" in page
    assert set_aside_files(b.settings) == {f"quarantine/{digest.hex}"}  # kept to inspect


def test_verify_repairs_a_corrupted_blob_from_an_s3_mirror(
    start_node: Callable[..., RunningNode], s3_bucket: str
) -> None:
    node = start_node("mirrored", mirror={"interval": 0.05})
    with node.client(ADMIN_TOKEN) as http:
        body = {"name": "bucket", "kind": "s3", "url": f"s3://{s3_bucket}/models"}
        assert http.post("/v1/mirrors", json=body).status_code == 201
    data = payload(300_000, seed=6)
    (digest,) = upload(node, {PATH: data})

    def pushed() -> bool:
        with node.client(ADMIN_TOKEN) as http:
            return bool(http.get("/v1/mirrors").json()[0]["backlog"] == 0)

    wait_for(pushed, 60, "the commit pushed to the bucket", interval=0.1)
    corrupt_stored_blob(node.settings, digest)

    code, run = verify(node)  # no peers: the bucket is the only good copy

    assert code == 0 and (run["corrupt"], run["repaired"]) == (1, 1), run
    assert stored_bytes(node.settings, digest) == data


def test_a_blob_with_no_good_copy_is_repaired_by_uploading_it_again(
    node: RunningNode,
) -> None:
    data = payload(300_000, seed=4)
    (digest,) = upload(node, {PATH: data})
    delete_stored_blob(node.settings, digest)

    code, run = verify(node)  # a node without peers or mirrors

    assert code == 1 and (run["missing"], run["unrepaired"]) == (1, 1)
    with node.client(ADMIN_TOKEN) as http:
        gone = http.get(f"/{REPO}/resolve/main/{PATH}")
        assert gone.status_code == 503 and error_code(gone) == "BlobQuarantined"
        again = http.put(f"/v1/blobs/{digest.hex}", content=data)
        assert again.status_code == 201, again.text  # held: written again, not "exists"
        assert http.get(f"/{REPO}/resolve/main/{PATH}").content == data
    assert scrub_status(node)["quarantined"] == 0
    assert verify(node)[0] == 0


def cursor_of(db: Database) -> str | None:
    with db.read() as tx:
        return tx.values.get("scrub.cursor")


@pytest.fixture
def node_db(node: RunningNode) -> Iterator[Database]:
    """The node's database, opened beside it (as `modelyard verify` opens it)."""
    db = Database(node.settings.effective_database_url)
    yield db
    db.dispose()


def test_verify_interrupted_continues_where_it_stopped(
    node: RunningNode, node_db: Database
) -> None:
    upload(node, {f"part-{i}.safetensors": payload(100_000, seed=10 + i) for i in range(8)})
    everything = sorted(d.hex for d in node.runtime.blobs.iter_digests())
    command = [sys.executable, "-m", "registry", "verify", "--json", "--rate", "50k"]
    slow = subprocess.Popen(
        command,
        env={**os.environ, **env_of(node.settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: cursor_of(node_db), 60, "the first run saved a cursor", interval=0.2)
        busy = CliRunner().invoke(cli, ["verify"], env=env_of(node.settings))
        assert busy.exit_code == 4 and "ScrubRunning" in busy.output  # one scrub at a time
        slow.send_signal(signal.SIGTERM)
        out, err = slow.communicate(timeout=60)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(timeout=10)
    assert slow.returncode == 130, err.decode()
    first = json.loads(out)
    cursor = cursor_of(node_db)
    assert not first["complete"] and first["resumed_from"] is None
    assert cursor == everything[first["checked"] - 1]  # the last blob it finished

    code, second = verify(node, "--rate", "0")

    assert code == 0 and second["complete"] and second["resumed_from"] == cursor
    assert first["checked"] + second["checked"] == len(everything)  # nothing skipped or redone
    assert cursor_of(node_db) == ""  # the pass is done: the next one starts over
    code, third = verify(node, "--rate", "0")
    assert third["resumed_from"] is None and third["checked"] == len(everything)


def test_serve_scrubs_by_itself_and_stops_serving_a_corrupt_blob(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("solo", scrub={"interval": 1, "rate": 0})
    data = payload(200_000, seed=5)
    (digest,) = upload(node, {PATH: data})
    corrupt_stored_blob(node.settings, digest)

    def finished() -> dict[str, Any] | None:
        status = scrub_status(node)  # a pass a second; each run counts what stays held
        last_run = status["last_run"]
        return status if status["totals"]["corrupt"] and last_run else None

    wait_for(finished, 60, "a pass of the node's own held the blob", interval=0.1)

    status = finished()
    assert status is not None and status["last_run"]["by"] == "serve"
    assert status["last_run"]["unrepaired"] == 1 and status["totals"]["unrepairable"] >= 1
    assert scrub_status(node)["quarantined"] == 1
    with node.client(ADMIN_TOKEN) as http:
        held = http.get(f"/v1/blobs/{digest.hex}")
        assert held.status_code == 503 and error_code(held) == "BlobQuarantined"
    assert metric(node, "modelyard_scrub_corrupt_blobs_total") == 1
