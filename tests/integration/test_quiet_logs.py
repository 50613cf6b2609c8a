"""Quiet, useful logs: health polls and successful probes log nothing at INFO, and a peer's or
a mirror's way down and back up is logged once each way, however many retries lie between."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from huggingface_hub import HfApi

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode

FAST_MIRROR = {"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.3}
OURS = ("registry", "sync", "mirror", "uvicorn")  # the node's loggers, not the test's client
STARTUP = "registry.service.indexer"  # a node's one line once its search index is built


def ours(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith(OURS) and r.name != STARTUP and r.levelno >= level
    ]


def lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in ours(caplog, level) if r.levelno == level and text in r.msg]


def wait_until(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def peer(node: RunningNode) -> dict[str, object]:
    with node.client(ADMIN_TOKEN) as http:
        return dict(http.get("/v1/peers").json()[0])


def status_peer(node: RunningNode) -> dict[str, object]:
    with node.client(ADMIN_TOKEN) as http:
        return dict(http.get("/v1/status").json()["peers"][0])


def test_health_polls_log_nothing_at_info(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    node = start_node("node")
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    with node.client() as http:
        for _ in range(50):
            assert http.get("/v1/health").status_code == 200
    assert ours(caplog) == []


def test_peer_down_and_up_is_logged_once_each_way_and_its_error_cleared(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    other = start_node("other")
    node = start_node("node", sync=FAST_SYNC)
    with node.client(ADMIN_TOKEN) as http:
        http.post("/v1/peers", json={"url": other.url}).raise_for_status()
    wait_until(lambda: peer(node)["state"] == "up")
    # How the peer is joined is decided (and logged) once, at its first pull.
    wait_until(lambda: node.runtime.snapshots.chosen(other.url) is None)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    time.sleep(1)  # five probes of a peer that is up: none is logged at INFO
    assert ours(caplog) == []

    other.server.stop()
    wait_until(lambda: peer(node)["state"] == "down")
    down, status = peer(node), status_peer(node)
    assert down["last_error"] and down["last_error_at"]
    assert status["last_error"] and status["last_error_ms"]  # the same health book
    time.sleep(1.5)  # several failed probes and pulls while it stays down
    assert len([r for r in ours(caplog, logging.DEBUG) if "peer state" in r.msg]) >= 1
    start_node("other", port=other.port)
    wait_until(lambda: peer(node)["state"] == "up")
    wait_until(lambda: lines(caplog, logging.INFO, "peer up again"))

    warnings = [r.getMessage() for r in ours(caplog, logging.WARNING)]
    assert len(warnings) == 1 and "peer state" in warnings[0], warnings
    assert "Connect" in warnings[0]  # the error that took it down is in the line
    assert len(lines(caplog, logging.INFO, "peer up again")) == 1
    up, status = peer(node), status_peer(node)
    assert up["last_error"] is None and up["last_error_at"] is None
    assert status["last_error"] is None and status["last_error_ms"] is None


def test_mirror_failing_and_ok_is_logged_once_each_way(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    target = start_node("target")
    node = start_node("node", mirror=FAST_MIRROR)
    target.server.stop()
    body = {"name": "m", "kind": "node", "url": target.url, "token": target.admin_token}
    with node.client(ADMIN_TOKEN) as http:
        assert http.post("/v1/mirrors", json=body).status_code == 201
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/quiet")
    api.upload_file(path_or_fileobj=b"quiet\n", path_in_repo="README.md", repo_id="admin/quiet")

    def failures() -> int:
        return len([r for r in ours(caplog, logging.DEBUG) if "mirror push failed" in r.msg])

    wait_until(lambda: failures() >= 3)  # retried several times while the target is down
    with node.client(ADMIN_TOKEN) as http:
        failing = http.get("/v1/mirrors").json()[0]
    assert failing["state"] == "failing" and failing["last_error_at"]
    start_node("target", port=target.port)

    def ok() -> bool:
        with node.client(ADMIN_TOKEN) as http:
            return bool(http.get("/v1/mirrors").json()[0]["state"] == "ok")

    wait_until(ok)
    warnings = [r.getMessage() for r in ours(caplog, logging.WARNING)]
    assert len(warnings) == 1 and "mirror push failed mirror=m" in warnings[0], warnings
    assert len(lines(caplog, logging.INFO, "mirror ok again")) == 1
