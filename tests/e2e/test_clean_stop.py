"""Ctrl-C or SIGTERM stops a node within 3 s, cleanly: while a peer long-polls it, while it
pulls from a peer, and with an upload in flight (which then leaves nothing behind).

Each node is a separate `modelyard serve` process (tests/e2e/nodeproc.py); the time measured
runs from the signal to the process's exit. A clean stop exits with code 0 for either signal
(see registry/cli/serve.py) and prints no traceback.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import httpx
import pytest
from huggingface_hub import HfApi

from tests.e2e.nodeproc import NodeProcess, uploads_in_flight, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "myd_clean_stop_admin_token"
STOP_WITHIN = 3.0  # seconds from the signal to the exit
LONG_POLL = "20"  # far longer than a stop may take: an open long-poll must not hold it
MiB = 1024 * 1024
UPLOAD_SIZE = 64 * MiB  # declared; never all sent
FAST_PART = 8 * MiB  # sent at once (the node writes pieces of ~4 MiB); the rest trickles


def node(tmp_path: Path, name: str) -> NodeProcess:
    env = {"MODELYARD_SYNC__LONG_POLL": LONG_POLL, "MODELYARD_SYNC__PROBE_INTERVAL": "0.5"}
    return NodeProcess(tmp_path / name, TOKEN, env=env)


def stop(node: NodeProcess, sig: signal.Signals) -> tuple[int, float]:
    """Signal the node; its exit code and the seconds it took to exit."""
    started = time.monotonic()
    code = node.interrupt(sig)
    return code, time.monotonic() - started


def assert_quiet(node: NodeProcess) -> None:
    log = node.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert "CancelledError" not in log, log[-4000:]


def caught_up(replica: NodeProcess) -> bool:
    """The replica read its peer's feed to the end: its next pull is a long-poll that waits."""
    with replica.client() as http:
        peers = http.get("/v1/peers").json()
    return bool(peers) and peers[0]["cursor"] > 0 and peers[0]["lag_serials"] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_nodes_stop_promptly_and_quietly_when_signalled_while_replicating(
    tmp_path: Path, sig: signal.Signals
) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    try:
        a.start()
        b.start()
        HfApi(endpoint=a.url, token=TOKEN).create_repo("admin/stop")  # an entry to read
        with b.client() as http:
            http.post("/v1/peers", json={"url": a.url, "token": TOKEN}).raise_for_status()
        wait_for(lambda: caught_up(b), 30, "B has read A's feed and long-polls it")
        for stopped in (a, b):  # A with B's long-poll open; then B, its puller retrying A
            code, took = stop(stopped, sig)
            assert code == 0, f"{stopped.data_dir.name} exited with {code}"
            assert took < STOP_WITHIN, f"{stopped.data_dir.name} took {took:.2f}s to stop"
            assert_quiet(stopped)
    finally:
        a.kill()
        b.kill()


def test_nodes_stop_promptly_when_the_replica_is_stopped_first(tmp_path: Path) -> None:
    """B stopped while its puller waits inside A's long-poll (a blocking read it cannot cut)."""
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    try:
        a.start()
        b.start()
        HfApi(endpoint=a.url, token=TOKEN).create_repo("admin/stop")
        with b.client() as http:
            http.post("/v1/peers", json={"url": a.url, "token": TOKEN}).raise_for_status()
        wait_for(lambda: caught_up(b), 30, "B has read A's feed and long-polls it")
        for stopped in (b, a):
            code, took = stop(stopped, signal.SIGTERM)
            assert (code, took < STOP_WITHIN) == (0, True), (stopped.data_dir.name, code, took)
            assert_quiet(stopped)
    finally:
        a.kill()
        b.kill()


def slow_body(piece: bytes, stopped: threading.Event) -> Iterator[bytes]:
    """FAST_PART at once, then a trickle until the node has been stopped."""
    sent = 0
    while sent < UPLOAD_SIZE and not stopped.is_set():
        yield piece
        sent += len(piece)
        if sent >= FAST_PART:
            time.sleep(0.05)  # pacing the body, not waiting for readiness


def test_node_stops_promptly_during_an_upload_and_keeps_no_part_of_it(tmp_path: Path) -> None:
    uploader = node(tmp_path, "node")
    piece = os.urandom(MiB)
    digest = blake3.blake3(piece * (UPLOAD_SIZE // MiB)).hexdigest()
    stopped = threading.Event()
    outcome: list[object] = []

    def send() -> None:
        try:
            response = httpx.put(
                f"{uploader.url}/v1/blobs/{digest}",
                content=slow_body(piece, stopped),
                headers={"content-length": str(UPLOAD_SIZE), "authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            outcome.append(response.status_code)
        except httpx.TransportError as exc:  # the node went away mid-body: expected too
            outcome.append(exc)

    sender = threading.Thread(target=send)
    try:
        uploader.start()
        sender.start()
        wait_for(lambda: uploads_in_flight(uploader), 30, "the upload is writing its temp file")
        code, took = stop(uploader, signal.SIGTERM)
        stopped.set()
        sender.join(timeout=30)
        assert code == 0 and took < STOP_WITHIN, (code, took)
        assert outcome and outcome[0] != 201, outcome  # cut short, never acknowledged
        assert list((uploader.data_dir / "store" / "uploads").iterdir()) == []
        assert_quiet(uploader)
        uploader.start()
        assert list((uploader.data_dir / "store" / "blobs").rglob(digest)) == []
        with uploader.client() as http:
            assert http.head(f"/v1/blobs/{digest}").status_code == 404
    finally:
        stopped.set()
        uploader.kill()
        sender.join(timeout=30)
