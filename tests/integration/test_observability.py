"""/metrics, /v1/status and /status show a node's health, peers included."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode


def scrape(node: RunningNode) -> dict[str, list[tuple[dict[str, str], float]]]:
    with node.client() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_count_requests_bytes_and_blobs(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/m")
    sha = api.upload_file(path_or_fileobj=b"x" * 5000, path_in_repo="w.bin", repo_id="admin/m").oid
    for _ in range(3):
        api.model_info("admin/m", revision=sha)  # served by the fast path after the first
    samples = scrape(node)
    routes = {labels["route"] for labels, _ in samples["modelyard_http_requests_total"]}
    assert "/api/repos/create" in routes and "fastpath" in routes
    assert all("admin/m" not in route for route in routes)  # templates, never repo names
    assert dict(samples["modelyard_blob_store_blobs"][0][0]) == {}
    assert samples["modelyard_blob_store_blobs"][0][1] >= 2
    assert samples["modelyard_blob_store_size_bytes"][0][1] >= 5000
    assert samples["modelyard_change_log_serial"][0][1] >= 5
    received = sum(v for _, v in samples["modelyard_http_received_bytes_total"])
    assert received >= 5000
    assert "modelyard_http_request_duration_seconds_bucket" in samples


@pytest.fixture
def follower(start_node: Callable[..., RunningNode]) -> RunningNode:
    return start_node("follower", sync=FAST_SYNC)


def wait_for_state(node: RunningNode, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with node.client() as http:
            peers = http.get("/v1/status").json()["peers"]
        if peers and peers[0]["state"] == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"peer never {state}")


def test_status_and_metrics_show_a_stopped_peer_down(follower: RunningNode) -> None:
    with follower.client(ADMIN_TOKEN) as http:
        assert http.post("/v1/peers", json={"url": "http://127.0.0.1:9"}).status_code == 201
    wait_for_state(follower, "down")
    states = {labels["state"]: value for labels, value in scrape(follower)["modelyard_peer_state"]}
    assert states["down"] == 1.0 and states["up"] == 0.0
    with follower.client() as http:
        page = http.get("/status")
    assert page.status_code == 200 and 'http-equiv="refresh"' in page.text
    assert '<b class="down">down</b>' in page.text and "<script" not in page.text


def test_status_page_lists_public_uploads_only(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/shown")
    api.create_repo("admin/hidden", private=True)
    with node.client() as http:
        status = http.get("/v1/status").json()
        page = http.get("/status").text
    repos = {r["repo"] for r in status["recent"]}
    assert "admin/shown" in repos and "admin/hidden" not in repos
    assert "admin/shown" in page and "admin/hidden" not in page
    assert status["node_id"] and status["uptime_seconds"] >= 0


def test_dashboard_and_alerts_use_only_metrics_a_node_exposes(node: RunningNode) -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    dashboard = json.loads((deploy / "grafana" / "modelyard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    referenced = set(re.findall(r"modelyard_[a-z_]+", " ".join(exprs)))
    referenced |= set(
        re.findall(r"modelyard_[a-z_]+", (deploy / "prometheus" / "alerts.yml").read_text())
    )
    with node.client(ADMIN_TOKEN) as http:
        http.post("/v1/peers", json={"url": "http://127.0.0.1:9"})  # so peer series exist
        mirror = {"name": "m", "kind": "node", "url": "http://127.0.0.1:9"}
        http.post("/v1/mirrors", json=mirror)  # and mirror series
        http.get("/v1/health")
    exposed = set(scrape(node))
    assert referenced and referenced <= exposed, referenced - exposed


def peer_state(node: RunningNode) -> tuple[str, str, float]:
    with node.client() as http:
        status = http.get("/v1/status").json()["peers"][0]["state"]
        page = http.get("/status").text
    metric = {labels["state"]: value for labels, value in scrape(node)["modelyard_peer_state"]}
    shown = next(s for s in ("up", "degraded", "down", "unknown") if f'class="{s}"' in page)
    return status, shown, metric.get(status, 0.0)


def test_stopped_peer_is_down_within_a_probe_interval_and_up_after_it_returns(
    follower: RunningNode, start_node: Callable[..., RunningNode]
) -> None:
    peer = start_node("peer")
    with follower.client(ADMIN_TOKEN) as http:
        http.post("/v1/peers", json={"url": peer.url}).raise_for_status()
    wait_for_state(follower, "up")
    peer.server.stop()
    stopped = time.monotonic()
    wait_for_state(follower, "down")
    assert time.monotonic() - stopped < 0.2 + 1.0  # probe interval 0.2 s, plus slack
    assert peer_state(follower) == ("down", "down", 1.0)  # JSON, page and metric agree
    start_node("peer", port=peer.port)  # back at the same address, same data
    wait_for_state(follower, "up")
    assert peer_state(follower) == ("up", "up", 1.0)
