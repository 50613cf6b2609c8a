"""Watching a node with real tools: promtool, a Prometheus server, headless Chromium."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode
from tests.ports import closed_port, free_port
from tests.tools import require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def watched(start_node: Callable[..., RunningNode]) -> Iterator[RunningNode]:
    """A node with one peer that is stopped (nothing listens at its address, held for the
    test so that no other test's server can start there)."""
    node = start_node("watched", sync=FAST_SYNC)
    with closed_port() as port, node.client(ADMIN_TOKEN) as http:
        http.post("/v1/peers", json={"url": f"http://127.0.0.1:{port}"}).raise_for_status()
        deadline = time.monotonic() + 20
        while http.get("/v1/status").json()["peers"][0]["state"] != "down":
            assert time.monotonic() < deadline, "peer never went down"
            time.sleep(0.05)
        yield node


def test_promtool_accepts_a_scrape_the_config_and_the_rules(watched: RunningNode) -> None:
    promtool = require("promtool")
    with watched.client() as http:
        scrape = http.get("/metrics").text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, text=True, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for args in (
        ["check", "config", str(DEPLOY / "prometheus.yml")],
        ["check", "rules", str(DEPLOY / "alerts.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_fires_peer_down_alert(watched: RunningNode, tmp_path: Path) -> None:
    prometheus = require("prometheus")
    rules = (DEPLOY / "alerts.yml").read_text().replace("for: 1m", "for: 0s")
    (tmp_path / "alerts.yml").write_text(rules)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [alerts.yml]\n"
        "scrape_configs:\n  - job_name: modelyard\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{watched.port}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        firing: list[dict[str, Any]] = []
        while not firing:
            assert time.monotonic() < deadline, "PeerDown alert never fired"
            time.sleep(0.5)
            try:
                alerts = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts").json()
            except (httpx.HTTPError, json.JSONDecodeError):
                continue
            firing = [
                a
                for a in alerts["data"]["alerts"]
                if a["labels"]["alertname"] == "ModelyardPeerDown" and a["state"] == "firing"
            ]
        assert firing[0]["labels"]["peer"]  # which peer is named
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_status_page_in_headless_chromium_shows_the_peer_down(watched: RunningNode) -> None:
    chromium = require("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={ARTIFACTS / 'chromium-profile'}",
        "--window-size=420,900",
    ]
    url = f"{watched.url}/status"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    peers_table = dom.split('<table id="peers">', 1)[1].split("</table>", 1)[0]
    assert '<b class="down">down</b>' in peers_table
